"""Production online store: Redis sorted sets, one round trip per feature computation.

Per entity two sorted sets scored by time in microseconds (exact in a double up to year
2255): ``<prefix>:<entity>:<id>`` whose members are 24 packed bytes ``(time_ns, tx_id,
amount)`` (every transaction) and ``<prefix>:<entity>:f:<id>`` whose members are 8 packed
bytes ``tx_id`` (matured fraud labels: a label update is one ZADD, nothing is rewritten).
A fetch is one EVALSHA whose Lua script concatenates the four ranges into four strings, so
the client parses four bulk strings with ``numpy.frombuffer`` instead of hundreds of
members. The watermark is the hash ``<prefix>:meta``; an append is one EVALSHA too, which
advances it, adds the transaction, prunes both entities' entries older than watermark -
horizon (ZREMRANGEBYSCORE) and refreshes a TTL, so idle entities expire. (The scripts
touch several keys: single Redis instance.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_DATETIME
from ml_platform.features.stores.base import ENTITIES, EntityState, OnlineStore, TxRecord, to_ns

_REC = np.dtype([("t", "<i8"), ("id", "<i8"), ("amount", "<f8")])
_ID = np.dtype("<i8")

_FETCH_LUA = """
local out = {}
for i = 1, 4 do
  local lo = ARGV[1]
  if i > 2 then lo = ARGV[2] end
  out[i] = table.concat(redis.call('ZRANGEBYSCORE', KEYS[i], lo, ARGV[3]))
end
return out
"""

# KEYS: meta, customer tx, customer frauds, terminal tx, terminal frauds.
# ARGV: member, time in us, watermark order key, time in ns, horizon in us, ttl in s.
# The order key is ns + 2**63 as 20 digits: Lua numbers are doubles, too coarse for ns,
# but fixed-width strings compare exactly; microseconds are exact in a double.
_APPEND_LUA = """
local cur = redis.call('HMGET', KEYS[1], 'k', 'us')
local wus = ARGV[2]
if (not cur[1]) or ARGV[3] > cur[1] then
  redis.call('HSET', KEYS[1], 'k', ARGV[3], 'ns', ARGV[4], 'us', ARGV[2])
else
  wus = cur[2]
end
local old = tonumber(wus) - tonumber(ARGV[5])
local bound = '(' .. string.format('%d', old)
for i = 2, 4, 2 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', bound)
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', bound)
  redis.call('EXPIRE', KEYS[i], ARGV[6])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[6])
end
return 1
"""

_SHORT = {CUSTOMER_ID: "c", TERMINAL_ID: "t"}
_ORDER_OFFSET = 2**63
_TTL_MARGIN_S = 86_400


def _us(ns: int) -> int:
    return ns // 1000


class RedisStore(OnlineStore):
    """State in Redis under ``prefix`` (e.g. ``mlp:fs``); ``clear`` deletes only that prefix.

    ``timeout_s`` bounds connecting and every reply: an unreachable or hung Redis raises
    ``redis.TimeoutError`` / ``ConnectionError`` (the API turns them into a 503).
    """

    kind = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "mlp:fs",
        label_delay_days: int = 7,
        timeout_s: float | None = 1.0,
    ) -> None:
        import redis

        super().__init__(label_delay_days)
        self.prefix = prefix
        self._r = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._fetch = self._r.register_script(_FETCH_LUA)
        self._append = self._r.register_script(_APPEND_LUA)
        self.meta_key = f"{prefix}:meta"
        self.ttl_s = self.horizon_ns // 10**9 + _TTL_MARGIN_S

    def _key(self, entity: str, eid: int, fraud: bool = False) -> str:
        return f"{self.prefix}:{_SHORT[entity]}:{'f:' if fraud else ''}{eid}"

    def fetch(
        self,
        customer_id: int,
        terminal_id: int,
        customer_lo_ns: int,
        terminal_lo_ns: int,
        hi_ns: int,
    ) -> tuple[EntityState, EntityState]:
        # Scores are whole microseconds: widen by one and filter exactly on the ns field.
        keys = [
            self._key(CUSTOMER_ID, customer_id),
            self._key(CUSTOMER_ID, customer_id, fraud=True),
            self._key(TERMINAL_ID, terminal_id),
            self._key(TERMINAL_ID, terminal_id, fraud=True),
        ]
        c_tx, c_fr, t_tx, t_fr = self._fetch(
            keys=keys, args=[_us(customer_lo_ns), _us(terminal_lo_ns), _us(hi_ns) + 1]
        )
        return _state(c_tx, c_fr, customer_lo_ns, hi_ns), _state(t_tx, t_fr, terminal_lo_ns, hi_ns)

    def append(self, tx: TxRecord) -> None:
        member = np.array([(tx.time_ns, tx.transaction_id, tx.tx_amount)], dtype=_REC).tobytes()
        keys = [
            self.meta_key,
            self._key(CUSTOMER_ID, tx.customer_id),
            self._key(CUSTOMER_ID, tx.customer_id, fraud=True),
            self._key(TERMINAL_ID, tx.terminal_id),
            self._key(TERMINAL_ID, tx.terminal_id, fraud=True),
        ]
        # pruned: whole microseconds before watermark - horizon (fetch filters exactly)
        args = [
            member,
            _us(tx.time_ns),
            f"{tx.time_ns + _ORDER_OFFSET:020d}",
            tx.time_ns,
            _us(self.horizon_ns),
            self.ttl_s,
        ]
        self._append(keys=keys, args=args)

    def set_frauds(self, frauds: pd.DataFrame) -> int:
        frauds = frauds[frauds["tx_fraud"].astype(int) == 1]
        p = self._r.pipeline(transaction=False)
        for row in frauds.itertuples(index=False):
            score = _us(to_ns(getattr(row, TX_DATETIME)))
            for entity in ENTITIES:
                fkey = self._key(entity, int(getattr(row, entity)), fraud=True)
                p.zadd(fkey, {_id_bytes(int(getattr(row, TRANSACTION_ID))): score})
                p.expire(fkey, self.ttl_s)
        p.execute()
        return len(frauds)

    def _bulk_insert(self, rows: pd.DataFrame) -> None:
        if rows.empty:
            return
        t = rows["time_ns"].to_numpy(np.int64)
        recs = np.empty(len(rows), dtype=_REC)
        recs["t"], recs["id"] = t, rows[TRANSACTION_ID].to_numpy(np.int64)
        recs["amount"] = rows["tx_amount"].to_numpy(np.float64)
        buf = recs.tobytes()
        members = [buf[i : i + _REC.itemsize] for i in range(0, len(buf), _REC.itemsize)]
        idbuf = recs["id"].astype(_ID).tobytes()
        ids = [idbuf[i : i + 8] for i in range(0, len(idbuf), 8)]
        scores = (t // 1000).tolist()
        fraud = rows["fraud"].to_numpy() == 1
        p = self._r.pipeline(transaction=False)
        for entity in ENTITIES:
            eids = rows[entity].to_numpy(np.int64)
            order = np.argsort(eids, kind="stable")
            bounds = np.flatnonzero(np.diff(eids[order])) + 1
            for grp in np.split(order, bounds):
                key = self._key(entity, int(eids[grp[0]]))
                p.zadd(key, {members[i]: scores[i] for i in grp})
                p.expire(key, self.ttl_s)
                fr = grp[fraud[grp]]
                if len(fr):
                    fkey = self._key(entity, int(eids[grp[0]]), fraud=True)
                    p.zadd(fkey, {ids[i]: scores[i] for i in fr})
                    p.expire(fkey, self.ttl_s)
                if len(p) >= 5000:
                    p.execute()
        p.execute()

    def _keys(self) -> list[bytes]:
        return list(self._r.scan_iter(match=f"{self.prefix}:*", count=5000))

    def clear(self) -> None:
        keys = self._keys()
        for i in range(0, len(keys), 5000):
            self._r.unlink(*keys[i : i + 5000])

    def entity_counts(self) -> dict[str, int]:
        counts = {e: 0 for e in ENTITIES}
        by_short = {f"{self.prefix}:{s}:": e for e, s in _SHORT.items()}
        for k in self._keys():
            key = k.decode()
            for head, entity in by_short.items():
                if key.startswith(head) and not key.startswith(head + "f:"):
                    counts[entity] += 1
        return counts

    def watermark_ns(self) -> int | None:
        value = self._r.hget(self.meta_key, "ns")
        return None if value is None else int(value)

    def _set_watermark(self, time_ns: int) -> None:
        mapping = {"k": f"{time_ns + _ORDER_OFFSET:020d}", "ns": time_ns, "us": _us(time_ns)}
        self._r.hset(self.meta_key, mapping=mapping)

    def close(self) -> None:
        self._r.close()


def _id_bytes(tx_id: int) -> bytes:
    return np.array([tx_id], dtype=_ID).tobytes()


def _state(tx: bytes, fr: bytes, lo_ns: int, hi_ns: int) -> EntityState:
    if not tx:
        return EntityState.empty()
    recs = np.frombuffer(tx, dtype=_REC)
    times, ids = recs["t"], recs["id"]
    frauds = np.isin(ids, np.frombuffer(fr, dtype=_ID)).astype(np.int64) if fr else None
    keep = (times > lo_ns) & (times <= hi_ns)
    if len(times) > 1 and (times[1:] <= times[:-1]).any():
        # same us or same ns: order by (time, id) exactly as SQLite does, so sums match bit
        # for bit across stores
        o = np.lexsort((ids, times))
        recs, keep = recs[o], keep[o]
        frauds = frauds[o] if frauds is not None else None
    if not keep.all():
        recs = recs[keep]
        frauds = frauds[keep] if frauds is not None else None
    n = len(recs)
    return EntityState(
        np.ascontiguousarray(recs["t"]),
        np.ascontiguousarray(recs["id"]),
        np.ascontiguousarray(recs["amount"]),
        frauds if frauds is not None else np.zeros(n, dtype=np.int64),
    )
