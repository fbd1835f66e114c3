"""Embedded online store: one SQLite file per use case, one clustered table keyed by entity.

``WITHOUT ROWID`` with primary key ``(entity, entity_id, time_ns, event_id)`` makes a
fetch one index range scan per entity; WAL mode lets the serving process read while a
loader writes. The column types follow the use case (integer or text keys and ids, one
``v<i>`` column per value column, an integer or real label). ``store_meta`` holds the
watermark and the use case the file belongs to (a file of another use case is refused); an
append advances the watermark and prunes against it in the same transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_platform.features.definitions import DEFAULT_USE_CASE
from ml_platform.features.stores.base import (
    EntityState,
    EventRecord,
    Key,
    LoadRows,
    OnlineStore,
)

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

TABLE = "entity_events"
META_TABLE = "store_meta"
WATERMARK_KEY = "watermark_ns"
USE_CASE_KEY = "use_case"
_SQL_TYPE = {"int": "INTEGER", "string": "TEXT"}


def _schema(key_type: str, id_type: str, n_values: int, label_type: str) -> str:
    values = "".join(f"    v{i} REAL NOT NULL,\n" for i in range(n_values))
    return f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    entity TEXT NOT NULL,
    entity_id {key_type} NOT NULL,
    time_ns INTEGER NOT NULL,
    event_id {id_type} NOT NULL,
{values}    label {label_type} NOT NULL DEFAULT 0,
    PRIMARY KEY (entity, entity_id, time_ns, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {TABLE}_time ON {TABLE} (time_ns);
CREATE TABLE IF NOT EXISTS {META_TABLE} (
    key TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
"""


_ADVANCE = (
    f"INSERT INTO {META_TABLE} VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value) RETURNING value"
)


class SQLiteStore(OnlineStore):
    """The embedded default; safe to share across threads (one connection, one lock)."""

    kind = "sqlite"

    def __init__(
        self,
        path: Path | str,
        label_delay_days: int = 7,
        use_case: UseCase | str = DEFAULT_USE_CASE,
    ) -> None:
        super().__init__(label_delay_days, use_case)
        fs = self.features
        kinds = {kind for _, kind in fs.entities}
        # mixed key types: no affinity, so each key keeps its own type
        key_type = _SQL_TYPE[kinds.pop()] if len(kinds) == 1 else ""
        label_type = "INTEGER" if fs.label_task == "binary" else "REAL"
        n = self.layout.n_values
        self._schema = _schema(key_type, _SQL_TYPE[fs.event_id_type], n, label_type)
        values = "".join(f"v{i}, " for i in range(n))
        # Each query is a range scan of the primary key, so ORDER BY costs no sort.
        self._fetch_sql = (
            f"SELECT time_ns, event_id, {values}label FROM {TABLE} WHERE entity = ? "
            "AND entity_id = ? AND time_ns > ? AND time_ns <= ? ORDER BY time_ns, event_id"
        )
        marks = ", ".join("?" * (n + 4))
        self._insert_sql = f"INSERT OR IGNORE INTO {TABLE} VALUES ({marks}, 0)"
        self._load_sql = f"INSERT OR REPLACE INTO {TABLE} VALUES ({marks}, ?)"
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.executescript(self._schema)
        self._lock = threading.Lock()
        self._claim()

    def _claim(self) -> None:
        """Mark the file as this use case's; refuse one that holds another's state."""
        self._con.execute(
            f"INSERT OR IGNORE INTO {META_TABLE} VALUES (?, ?)", (USE_CASE_KEY, self.use_case)
        )
        (owner,) = self._con.execute(
            f"SELECT value FROM {META_TABLE} WHERE key = ?", (USE_CASE_KEY,)
        ).fetchone()
        if owner != self.use_case:
            self._con.close()
            raise ValueError(
                f"path: {self.path} holds the online state of use case {owner!r}, "
                f"not {self.use_case!r}"
            )

    def fetch_states(
        self, keys: Sequence[Key], lo_ns: Sequence[int], hi_ns: int
    ) -> tuple[EntityState, ...]:
        with self._lock:
            rows = [
                self._con.execute(self._fetch_sql, (entity, key, lo, hi_ns)).fetchall()
                for entity, key, lo in zip(self.entities, keys, lo_ns, strict=True)
            ]
        return tuple(EntityState.from_rows(r, self.layout) for r in rows)

    def append(self, event: EventRecord) -> None:
        with self._lock:
            self._con.execute("BEGIN")
            try:
                (watermark,) = self._con.execute(
                    _ADVANCE, (WATERMARK_KEY, event.time_ns)
                ).fetchone()
                old = watermark - self.horizon_ns
                for entity, key in zip(self.entities, event.keys, strict=True):
                    self._con.execute(
                        self._insert_sql,
                        (entity, key, event.time_ns, event.event_id, *event.values),
                    )
                    self._con.execute(
                        f"DELETE FROM {TABLE} WHERE entity = ? AND entity_id = ? AND time_ns <= ?",
                        (entity, key, old),
                    )
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

    def _set_labels(
        self,
        time_ns: np.ndarray,
        ids: np.ndarray,
        keys: tuple[np.ndarray, ...],
        labels: np.ndarray,
    ) -> None:
        times, tids, ys = time_ns.tolist(), ids.tolist(), labels.tolist()
        params = [
            (y, entity, key, t, tid)
            for entity, column in zip(self.entities, keys, strict=True)
            for key, t, tid, y in zip(column.tolist(), times, tids, ys, strict=True)
        ]
        with self._lock:
            self._con.execute("BEGIN")
            self._con.executemany(
                f"UPDATE {TABLE} SET label = ? WHERE entity = ? AND entity_id = ? "
                "AND time_ns = ? AND event_id = ?",
                params,
            )
            self._con.execute("COMMIT")

    def _bulk_insert(self, rows: LoadRows) -> None:
        # Primary-key order makes every insert a B-tree append; the time index is rebuilt once.
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(f"DROP INDEX IF EXISTS {TABLE}_time")
            for entity, column in zip(self.entities, rows.keys, strict=True):
                frame = pd.DataFrame({"k": column, "t": rows.time_ns, "i": rows.ids})
                o = frame.sort_values(["k", "t", "i"]).index.to_numpy()
                fields = (column, rows.time_ns, rows.ids, *rows.values, rows.labels)
                self._con.executemany(
                    self._load_sql,
                    zip([entity] * len(o), *(f[o].tolist() for f in fields), strict=True),
                )
            self._con.execute("COMMIT")
            self._con.executescript(self._schema)

    def prune(self, now_ns: int) -> int:
        """Drop every entry no window can reach any more (old state expires)."""
        with self._lock:
            cur = self._con.execute(
                f"DELETE FROM {TABLE} WHERE time_ns <= ?", (now_ns - self.horizon_ns,)
            )
        return cur.rowcount

    def clear(self) -> None:
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(f"DELETE FROM {TABLE}")
            self._con.execute(f"DELETE FROM {META_TABLE} WHERE key = ?", (WATERMARK_KEY,))
            self._con.execute("COMMIT")

    def watermark_ns(self) -> int | None:
        with self._lock:
            row = self._con.execute(
                f"SELECT value FROM {META_TABLE} WHERE key = ?", (WATERMARK_KEY,)
            ).fetchone()
        return None if row is None else int(row[0])

    def _set_watermark(self, time_ns: int) -> None:
        with self._lock:
            self._con.execute(
                f"INSERT OR REPLACE INTO {META_TABLE} VALUES (?, ?)", (WATERMARK_KEY, time_ns)
            )

    def entity_counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._con.execute(
                f"SELECT entity, COUNT(DISTINCT entity_id) FROM {TABLE} GROUP BY entity"
            ).fetchall()
        counts = dict.fromkeys(self.entities, 0)
        counts.update(dict(rows))
        return counts

    def close(self) -> None:
        with self._lock:
            self._con.close()
