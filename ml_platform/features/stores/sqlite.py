"""Embedded online store: one SQLite file, one clustered table keyed by entity and time.

``WITHOUT ROWID`` with primary key ``(entity, entity_id, time_ns, transaction_id)`` makes a
fetch one index range scan per entity; WAL mode lets the serving
process read while a loader writes. The watermark is a row of ``store_meta``; an append
advances it and prunes against it in the same transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pandas as pd

from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_DATETIME
from ml_platform.features.stores.base import ENTITIES, EntityState, OnlineStore, TxRecord, to_ns

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entity_tx (
    entity TEXT NOT NULL,
    entity_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    tx_id INTEGER NOT NULL,
    amount REAL NOT NULL,
    fraud INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (entity, entity_id, time_ns, tx_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entity_tx_time ON entity_tx (time_ns);
CREATE TABLE IF NOT EXISTS store_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

WATERMARK_KEY = "watermark_ns"
_ADVANCE = (
    "INSERT INTO store_meta VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value) RETURNING value"
)

# Each query is a range scan of the primary key, so ORDER BY costs no sort.
_FETCH = (
    "SELECT time_ns, tx_id, amount, fraud FROM entity_tx WHERE entity = ? AND entity_id = ? "
    "AND time_ns > ? AND time_ns <= ? ORDER BY time_ns, tx_id"
)


class SQLiteStore(OnlineStore):
    """The embedded default; safe to share across threads (one connection, one lock)."""

    kind = "sqlite"

    def __init__(self, path: Path | str, label_delay_days: int = 7) -> None:
        super().__init__(label_delay_days)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def fetch(
        self,
        customer_id: int,
        terminal_id: int,
        customer_lo_ns: int,
        terminal_lo_ns: int,
        hi_ns: int,
    ) -> tuple[EntityState, EntityState]:
        with self._lock:
            cust = self._con.execute(_FETCH, (CUSTOMER_ID, customer_id, customer_lo_ns, hi_ns))
            cust = cust.fetchall()
            term = self._con.execute(_FETCH, (TERMINAL_ID, terminal_id, terminal_lo_ns, hi_ns))
            term = term.fetchall()
        return EntityState.from_rows(cust), EntityState.from_rows(term)

    def append(self, tx: TxRecord) -> None:
        with self._lock:
            self._con.execute("BEGIN")
            try:
                (watermark,) = self._con.execute(_ADVANCE, (WATERMARK_KEY, tx.time_ns)).fetchone()
                old = watermark - self.horizon_ns
                for entity, eid in ((CUSTOMER_ID, tx.customer_id), (TERMINAL_ID, tx.terminal_id)):
                    self._con.execute(
                        "INSERT OR IGNORE INTO entity_tx VALUES (?, ?, ?, ?, ?, 0)",
                        (entity, eid, tx.time_ns, tx.transaction_id, tx.tx_amount),
                    )
                    self._con.execute(
                        "DELETE FROM entity_tx WHERE entity = ? AND entity_id = ? AND time_ns <= ?",
                        (entity, eid, old),
                    )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def set_frauds(self, frauds: pd.DataFrame) -> int:
        frauds = frauds[frauds["tx_fraud"].astype(int) == 1]
        times = [to_ns(v) for v in frauds[TX_DATETIME]]
        params = [
            (entity, int(eid), t, int(tid))
            for entity in ENTITIES
            for eid, t, tid in zip(frauds[entity], times, frauds[TRANSACTION_ID], strict=True)
        ]
        with self._lock:
            self._con.execute("BEGIN")
            self._con.executemany(
                "UPDATE entity_tx SET fraud = 1 WHERE entity = ? AND entity_id = ? "
                "AND time_ns = ? AND tx_id = ?",
                params,
            )
            self._con.execute("COMMIT")
        return len(frauds)

    def _bulk_insert(self, rows: pd.DataFrame) -> None:
        # Primary-key order makes every insert a B-tree append; the time index is rebuilt once.
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute("DROP INDEX IF EXISTS entity_tx_time")
            for entity in ENTITIES:
                r = rows.sort_values([entity, "time_ns", TRANSACTION_ID])
                self._con.executemany(
                    "INSERT OR REPLACE INTO entity_tx VALUES (?, ?, ?, ?, ?, ?)",
                    zip(
                        [entity] * len(r),
                        r[entity].tolist(),
                        r["time_ns"].tolist(),
                        r[TRANSACTION_ID].tolist(),
                        r["tx_amount"].tolist(),
                        r["fraud"].tolist(),
                        strict=True,
                    ),
                )
            self._con.execute("COMMIT")
            self._con.executescript(_SCHEMA)

    def prune(self, now_ns: int) -> int:
        """Drop every entry no window can reach any more (old state expires)."""
        with self._lock:
            cur = self._con.execute(
                "DELETE FROM entity_tx WHERE time_ns <= ?", (now_ns - self.horizon_ns,)
            )
        return cur.rowcount

    def clear(self) -> None:
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute("DELETE FROM entity_tx")
            self._con.execute("DELETE FROM store_meta WHERE key = ?", (WATERMARK_KEY,))
            self._con.execute("COMMIT")

    def watermark_ns(self) -> int | None:
        with self._lock:
            row = self._con.execute(
                "SELECT value FROM store_meta WHERE key = ?", (WATERMARK_KEY,)
            ).fetchone()
        return None if row is None else int(row[0])

    def _set_watermark(self, time_ns: int) -> None:
        with self._lock:
            self._con.execute(
                "INSERT OR REPLACE INTO store_meta VALUES (?, ?)", (WATERMARK_KEY, time_ns)
            )

    def entity_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._con.execute(
                "SELECT entity, COUNT(DISTINCT entity_id) FROM entity_tx GROUP BY entity"
            ).fetchall()
        counts = {e: 0 for e in ENTITIES}
        counts.update(dict(rows))
        return counts

    def close(self) -> None:
        with self._lock:
            self._con.close()
