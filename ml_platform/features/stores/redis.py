"""Production online store: Redis sorted sets, one round trip per feature computation.

Keys live under ``<prefix>:<use case>``. Per entity two sorted sets scored by time in
microseconds (exact in a double up to year 2255): ``<ns>:e:<entity>:<key>`` holds every event
and ``<ns>:l:<entity>:<key>`` the matured labels (a label update is one ZADD, nothing is
rewritten). With integer event ids an event member is packed bytes ``(time_ns, id,
values...)`` and a label member the packed id (plus the label, for regression): fixed widths,
so a fetch is one EVALSHA whose Lua script concatenates each range into one string and the
client parses it with ``numpy.frombuffer`` instead of hundreds of members. With string ids
the id follows the packed fields as UTF-8 and the script returns the members themselves.
The watermark is the hash ``<ns>:meta``; an append is one EVALSHA too, which advances it,
adds the event, prunes its entities' entries older than watermark - horizon
(ZREMRANGEBYSCORE) and refreshes a TTL, so idle entities expire. (The scripts touch several
keys: single Redis instance.)

Only where a use case needs them: with per-row label times a label member is packed
``(id, label, known_ns)`` (string ids: ``(label, known_ns)`` + id), written by a script that
replaces the event's previous label member, so a label maturing later carries its own time.
A side table's rows of one key are the sorted set ``<ns>:s:<table>:<key>`` (several keys
joined by ``\x1f``), all at score 0, each member the big-endian ``publication ns + 2**63``
followed by its packed columns: lexicographic order is time order to the nanosecond, so
the as-of row is one ``ZREVRANGEBYLEX ... LIMIT 0 1`` in the same EVALSHA as the entities'
ranges, and pruning one ``ZREMRANGEBYLEX``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_platform.features.definitions import DEFAULT_USE_CASE
from ml_platform.features.stores.base import (
    UNKNOWN_NS,
    EntityState,
    EventRecord,
    Key,
    LoadRows,
    OnlineStore,
    SideLayout,
    SideRow,
    SideRows,
)

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

_ID = np.dtype("<i8")

# KEYS: per entity its events, then its labels. ARGV: per entity its lower bound (us), then
# the upper bound (us), then "1" to concatenate each range into one string.
_FETCH_LUA = """
local n = #KEYS / 2
local out = {}
for i = 1, #KEYS do
  local r = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[math.floor((i - 1) / 2) + 1], ARGV[n + 1])
  if ARGV[n + 2] == '1' then out[i] = table.concat(r) else out[i] = r end
end
return out
"""

# The same, then per side-table key its newest row published at or before a bound.
# KEYS: per entity its events and its labels, then the side-table keys. ARGV: the number of
# entity keys, per entity its lower bound (us), the upper bound (us), the concatenate flag,
# then the exclusive lexicographic bound of the side rows ("(" + packed hi_ns + 1).
_FETCH_SIDE_LUA = """
local n = tonumber(ARGV[1])
local m = n / 2
local out = {}
for i = 1, n do
  local r = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[math.floor((i - 1) / 2) + 2], ARGV[m + 2])
  if ARGV[m + 3] == '1' then out[i] = table.concat(r) else out[i] = r end
end
for i = n + 1, #KEYS do
  local r = redis.call('ZREVRANGEBYLEX', KEYS[i], ARGV[m + 4], '-', 'LIMIT', 0, 1)
  out[i] = r[1] or ''
end
return out
"""

# Per-row label times: one label member per event. KEYS: label sets. ARGV: ttl, "1" when the
# id is the member's first 8 bytes (else it follows 16 packed bytes), then per key its
# score (us), the event id (bytes) and the new member; older members of that id go.
_SET_KNOWN_LUA = """
local fixed = ARGV[2] == '1'
for i = 1, #KEYS do
  local s, id, m = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], s, s)) do
    local oid
    if fixed then oid = string.sub(old, 1, 8) else oid = string.sub(old, 17) end
    if oid == id and old ~= m then redis.call('ZREM', KEYS[i], old) end
  end
  redis.call('ZADD', KEYS[i], s, m)
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
"""

# KEYS: meta, then per entity its events and its labels.
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
for i = 2, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', bound)
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', bound)
  redis.call('EXPIRE', KEYS[i], ARGV[6])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[6])
end
return 1
"""

_ORDER_OFFSET = 2**63
_TTL_MARGIN_S = 86_400
_SIDE_KEY_SEPARATOR = "\x1f"
_BATCH = 5000  # commands per pipeline flush
_LABELS_PER_CALL = 500  # label members per _SET_KNOWN_LUA call


def _us(ns: int) -> int:
    return ns // 1000


def _sortable(ns: int) -> bytes:
    """A time in ns as 8 bytes whose byte order is time order (side-table members)."""
    return (ns + _ORDER_OFFSET).to_bytes(8, "big")


class RedisStore(OnlineStore):
    """State in Redis under ``<prefix>:<use case>`` (e.g. ``mlp:fs:fraud``); ``clear``
    deletes only that namespace.

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
        use_case: UseCase | str = DEFAULT_USE_CASE,
    ) -> None:
        import redis

        super().__init__(label_delay_days, use_case)
        self.prefix = prefix
        self.namespace = f"{prefix}:{self.use_case}"
        self._r = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._fetch = self._r.register_script(_FETCH_LUA)
        self._append = self._r.register_script(_APPEND_LUA)
        self.meta_key = f"{self.namespace}:meta"
        self.ttl_s = self.horizon_ns // 10**9 + _TTL_MARGIN_S
        values = [(f"v{i}", "<f8") for i in range(self.layout.n_values)]
        #: integer ids: the whole member; string ids: the packed head before the UTF-8 id
        self._fixed = self.features.event_id_type == "int"
        self._rec = np.dtype([("t", "<i8"), *([("id", "<i8")] if self._fixed else []), *values])
        self._regression = self.features.label_task == "regression"
        self._lab = np.dtype([*([("id", "<i8")] if self._fixed else []), ("y", "<f8")])
        self._known = self.layout.known
        if self._known:
            self._lab = np.dtype(
                [*([("id", "<i8")] if self._fixed else []), ("y", "<f8"), ("k", "<i8")]
            )
            self._set_known = self._r.register_script(_SET_KNOWN_LUA)
        if self.side:
            self._fetch_side = self._r.register_script(_FETCH_SIDE_LUA)
        #: per side table its member layout: publication time (sortable bytes) + columns
        self._side_rec = {
            name: np.dtype([("p", ">u8"), *((f"c{i}", "<f8") for i in range(len(spec.columns)))])
            for name, spec in self.side.items()
        }

    def _key(self, entity: str, key: Key, label: bool = False) -> str:
        return f"{self.namespace}:{'l' if label else 'e'}:{entity}:{key}"

    def _entity_keys(self, keys: Sequence[Key]) -> list[str]:
        return [
            k
            for entity, key in zip(self.entities, keys, strict=True)
            for k in (self._key(entity, key), self._key(entity, key, label=True))
        ]

    def fetch_states(
        self, keys: Sequence[Key], lo_ns: Sequence[int], hi_ns: int
    ) -> tuple[EntityState, ...]:
        # Scores are whole microseconds: widen by one and filter exactly on the ns field.
        args = [*(_us(lo) for lo in lo_ns), _us(hi_ns) + 1, "1" if self._fixed else "0"]
        got = self._fetch(keys=self._entity_keys(keys), args=args)
        return tuple(
            self._state(got[2 * i], got[2 * i + 1], lo, hi_ns) for i, lo in enumerate(lo_ns)
        )

    def fetch_request(
        self,
        keys: Sequence[Key],
        lo_ns: Sequence[int],
        hi_ns: int,
        side: Sequence[tuple[str, tuple[Key, ...]]],
    ) -> tuple[tuple[EntityState, ...], tuple[SideRow | None, ...]]:
        entity_keys = self._entity_keys(keys)
        bound = b"(" + _sortable(hi_ns + 1)
        args = [
            len(entity_keys),
            *(_us(lo) for lo in lo_ns),
            _us(hi_ns) + 1,
            "1" if self._fixed else "0",
            bound,
        ]
        side_keys = [self._side_key(table, key) for table, key in side]
        got = self._fetch_side(keys=[*entity_keys, *side_keys], args=args)
        states = tuple(
            self._state(got[2 * i], got[2 * i + 1], lo, hi_ns) for i, lo in enumerate(lo_ns)
        )
        n = len(entity_keys)
        rows = tuple(
            self._side_row(table, member) for (table, _), member in zip(side, got[n:], strict=True)
        )
        return states, rows

    def _side_key(self, table: str, key: tuple[Key, ...]) -> str:
        return f"{self.namespace}:s:{table}:" + _SIDE_KEY_SEPARATOR.join(map(str, key))

    def _side_row(self, table: str, member: bytes) -> SideRow | None:
        if not member:
            return None
        rec = np.frombuffer(member, dtype=self._side_rec[table])[0]
        values = np.array([rec[f"c{i}"] for i in range(len(rec) - 1)], dtype=np.float64)
        return int(rec["p"]) - _ORDER_OFFSET, values

    def _put_side(self, spec: SideLayout, rows: SideRows, prune_ns: int | None) -> None:
        rec = np.zeros(len(rows), dtype=self._side_rec[spec.name])
        rec["p"] = rows.published_ns.astype(np.uint64) + np.uint64(_ORDER_OFFSET)
        for i, v in enumerate(rows.values):
            rec[f"c{i}"] = v
        members = [r.tobytes() for r in rec]
        keys = [
            self._side_key(spec.name, key)
            for key in zip(*(k.tolist() for k in rows.keys), strict=True)
        ]
        ttl = spec.horizon_ns // 10**9 + _TTL_MARGIN_S
        p = self._r.pipeline(transaction=False)
        for key, member, published in zip(keys, members, rows.published_ns.tolist(), strict=True):
            # idempotent: the row of that key and time replaces any earlier one
            p.zremrangebylex(key, b"[" + _sortable(published), b"(" + _sortable(published + 1))
            p.zadd(key, {member: 0})
            if len(p) >= _BATCH:
                p.execute()
        for key in dict.fromkeys(keys):
            if prune_ns is not None:
                p.zremrangebylex(key, "-", b"(" + _sortable(prune_ns + 1))
            p.expire(key, ttl)
        p.execute()

    def _member(self, event_id: Key, time_ns: int, values: Sequence[float]) -> bytes:
        if self._fixed:
            return np.array([(time_ns, event_id, *values)], dtype=self._rec).tobytes()
        head = np.array([(time_ns, *values)], dtype=self._rec).tobytes()
        return head + str(event_id).encode()

    def _label_member(self, event_id: Key, label: float, known: int | None = None) -> bytes:
        if known is not None:
            if self._fixed:
                return np.array([(event_id, label, known)], dtype=self._lab).tobytes()
            head = np.array([(label, known)], dtype=self._lab).tobytes()
            return head + str(event_id).encode()
        if not self._regression:
            return np.array([event_id], dtype=_ID).tobytes() if self._fixed else event_id.encode()
        if self._fixed:
            return np.array([(event_id, label)], dtype=self._lab).tobytes()
        return np.array([label], dtype="<f8").tobytes() + event_id.encode()

    def append(self, event: EventRecord) -> None:
        keys = [self.meta_key, *self._entity_keys(event.keys)]
        # pruned: whole microseconds before watermark - horizon (fetch filters exactly)
        args = [
            self._member(event.event_id, event.time_ns, event.values),
            _us(event.time_ns),
            f"{event.time_ns + _ORDER_OFFSET:020d}",
            event.time_ns,
            _us(self.horizon_ns),
            self.ttl_s,
        ]
        self._append(keys=keys, args=args)

    def _set_labels(
        self,
        time_ns: np.ndarray,
        ids: np.ndarray,
        keys: tuple[np.ndarray, ...],
        labels: np.ndarray,
        known: np.ndarray | None = None,
    ) -> None:
        if known is not None:
            self._set_known_labels(time_ns, ids, keys, labels, known)
            return
        members = [
            self._label_member(i, y) for i, y in zip(ids.tolist(), labels.tolist(), strict=True)
        ]
        scores = (time_ns // 1000).tolist()
        p = self._r.pipeline(transaction=False)
        for entity, column in zip(self.entities, keys, strict=True):
            for key, member, score in zip(column.tolist(), members, scores, strict=True):
                lkey = self._key(entity, key, label=True)
                p.zadd(lkey, {member: score})
                p.expire(lkey, self.ttl_s)
        p.execute()

    def _set_known_labels(
        self,
        time_ns: np.ndarray,
        ids: np.ndarray,
        keys: tuple[np.ndarray, ...],
        labels: np.ndarray,
        known: np.ndarray,
    ) -> None:
        """Per-row label times: each event's label member replaces its earlier one."""
        ids_list = ids.tolist()
        members = [
            self._label_member(i, y, k)
            for i, y, k in zip(ids_list, labels.tolist(), known.tolist(), strict=True)
        ]
        raw_ids = [
            np.array([i], dtype=_ID).tobytes() if self._fixed else str(i).encode() for i in ids_list
        ]
        scores = (time_ns // 1000).tolist()
        calls = [
            (self._key(entity, key, label=True), score, raw, member)
            for entity, column in zip(self.entities, keys, strict=True)
            for key, score, raw, member in zip(
                column.tolist(), scores, raw_ids, members, strict=True
            )
        ]
        p = self._r.pipeline(transaction=False)
        for lo in range(0, len(calls), _LABELS_PER_CALL):
            chunk = calls[lo : lo + _LABELS_PER_CALL]
            args = [self.ttl_s, "1" if self._fixed else "0"]
            for _, score, raw, member in chunk:
                args += [score, raw, member]
            self._set_known(keys=[c[0] for c in chunk], args=args, client=p)
        p.execute()

    def _bulk_insert(self, rows: LoadRows) -> None:
        if not len(rows):
            return
        times, ids = rows.time_ns.tolist(), rows.ids.tolist()
        values = list(zip(*(v.tolist() for v in rows.values), strict=True)) or [()] * len(rows)
        members = [self._member(i, t, v) for i, t, v in zip(ids, times, values, strict=True)]
        labeled = rows.labels != 0
        if rows.known is not None:
            labeled = labeled | (rows.known != UNKNOWN_NS)
        known = [None] * len(rows) if rows.known is None else rows.known.tolist()
        lmembers = {
            int(j): self._label_member(ids[j], y, known[j])
            for j, y in zip(np.flatnonzero(labeled), rows.labels[labeled].tolist(), strict=True)
        }
        scores = (rows.time_ns // 1000).tolist()
        p = self._r.pipeline(transaction=False)
        for entity, column in zip(self.entities, rows.keys, strict=True):
            groups = pd.Series(np.arange(len(rows))).groupby(column, sort=False).indices
            for key, grp in groups.items():
                ekey = self._key(entity, key)
                p.zadd(ekey, {members[i]: scores[i] for i in grp})
                p.expire(ekey, self.ttl_s)
                hits = grp[labeled[grp]]
                if len(hits):
                    lkey = self._key(entity, key, label=True)
                    p.zadd(lkey, {lmembers[int(i)]: scores[i] for i in hits})
                    p.expire(lkey, self.ttl_s)
                if len(p) >= 5000:
                    p.execute()
        p.execute()

    def _keys(self) -> list[bytes]:
        return list(self._r.scan_iter(match=f"{self.namespace}:*", count=5000))

    def clear(self) -> None:
        keys = self._keys()
        for i in range(0, len(keys), 5000):
            self._r.unlink(*keys[i : i + 5000])

    def entity_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.entities, 0)
        heads = {f"{self.namespace}:e:{e}:": e for e in self.entities}
        for k in self._keys():
            key = k.decode()
            for head, entity in heads.items():
                if key.startswith(head):
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

    def _state(self, tx: bytes | list[bytes], fr: bytes | list[bytes], lo_ns: int, hi_ns: int):
        """One entity's fetched ranges as its state, filtered to ``(lo_ns, hi_ns]`` exactly."""
        if not tx:
            return EntityState.empty(self.layout)
        if self._fixed:
            recs = np.frombuffer(tx, dtype=self._rec)
            ids = recs["id"]
        else:
            h = self._rec.itemsize
            recs = np.frombuffer(b"".join(m[:h] for m in tx), dtype=self._rec)
            ids = np.array([m[h:].decode() for m in tx], dtype=np.str_)
        if self._known:
            labels, known = self._labels_and_times(ids, fr)
        else:
            labels, known = self._labels(ids, fr), None
        times = recs["t"]
        keep = (times > lo_ns) & (times <= hi_ns)
        if len(times) > 1 and (times[1:] <= times[:-1]).any():
            # same us or same ns: order by (time, id) exactly as SQLite does, so sums match
            # bit for bit across stores
            o = np.lexsort((ids, times))
            recs, ids, labels, keep = recs[o], ids[o], labels[o], keep[o]
            known = None if known is None else known[o]
        if not keep.all():
            recs, ids, labels = recs[keep], ids[keep], labels[keep]
            known = None if known is None else known[keep]
        return EntityState(
            np.ascontiguousarray(recs["t"]),
            np.ascontiguousarray(ids),
            tuple(np.ascontiguousarray(recs[f"v{i}"]) for i in range(self.layout.n_values)),
            labels,
            known,
        )

    def _labels_and_times(
        self, ids: np.ndarray, fr: bytes | list[bytes]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-row label times: each event's label and when it became known (vectorised:
        an entity may hold thousands of events within its reach)."""
        labels = np.zeros(len(ids), dtype=self.layout.label_dtype)
        known = np.full(len(ids), UNKNOWN_NS, dtype=np.int64)
        if not fr or not len(ids):
            return labels, known
        if self._fixed:
            lab = np.frombuffer(fr, dtype=self._lab)
            lab_ids = lab["id"]
        else:
            h = self._lab.itemsize
            lab = np.frombuffer(b"".join(m[:h] for m in fr), dtype=self._lab)
            lab_ids = np.array([m[h:].decode() for m in fr], dtype=np.str_)
        order = np.argsort(lab_ids, kind="stable")
        at = np.minimum(np.searchsorted(lab_ids[order], ids), len(order) - 1)
        hit = lab_ids[order][at] == ids
        row = order[at[hit]]
        labels[hit] = lab["y"][row]
        known[hit] = lab["k"][row]
        return labels, known
        if self._fixed:
            lab = np.frombuffer(fr, dtype=self._lab)
            lab_ids = lab["id"].tolist()
        else:
            h = self._lab.itemsize
            lab = np.frombuffer(b"".join(m[:h] for m in fr), dtype=self._lab)
            lab_ids = [m[h:].decode() for m in fr]
        at = {i: j for j, i in enumerate(lab_ids)}
        for pos, i in enumerate(ids.tolist()):
            j = at.get(i)
            if j is not None:
                labels[pos] = lab["y"][j]
                known[pos] = lab["k"][j]
        return labels, known

    def _labels(self, ids: np.ndarray, fr: bytes | list[bytes]) -> np.ndarray:
        """Each event's matured label (0 when none is stored)."""
        if not fr:
            return np.zeros(len(ids), dtype=self.layout.label_dtype)
        if self._fixed and not self._regression:
            return np.isin(ids, np.frombuffer(fr, dtype=_ID)).astype(np.int64)
        if self._fixed:
            lab = np.frombuffer(fr, dtype=self._lab)
            known = dict(zip(lab["id"].tolist(), lab["y"].tolist(), strict=True))
        elif self._regression:
            known = {m[8:].decode(): float(np.frombuffer(m[:8], "<f8")[0]) for m in fr}
        else:
            known = dict.fromkeys((m.decode() for m in fr), 1)
        return np.array([known.get(i, 0) for i in ids.tolist()], dtype=self.layout.label_dtype)
