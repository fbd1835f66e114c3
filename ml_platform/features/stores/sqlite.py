"""Embedded online store: one SQLite file per use case, one clustered table keyed by entity.

``WITHOUT ROWID`` with primary key ``(entity, entity_id, time_ns, event_id)`` makes a
fetch one index range scan per entity; WAL mode lets the serving process read while a
loader writes. The column types follow the use case (integer or text keys and ids, one
``v<i>`` column per value column, an integer or real label). ``store_meta`` holds the
watermark and the use case the file belongs to (a file of another use case is refused); an
append advances the watermark and prunes against it in the same transaction.
Only where a use case needs them: a ``known_ns`` column (per-row label times; added to an
existing file by ``ALTER TABLE``) and one ``side_<table>`` table per side table read by an
as-of join, keyed ``(keys..., published_ns)``, so its as-of row is one index probe. A request
with as-of joins reads entities and side rows in one transaction (one snapshot).
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

TABLE = "entity_events"
META_TABLE = "store_meta"
WATERMARK_KEY = "watermark_ns"
USE_CASE_KEY = "use_case"
#: one table per side table an as-of join reads: ``side_<table name>``
SIDE_TABLE_PREFIX = "side_"
KNOWN_COLUMN = "known_ns"
_SQL_TYPE = {"int": "INTEGER", "string": "TEXT"}
_KNOWN_SQL = f"{KNOWN_COLUMN} INTEGER NOT NULL DEFAULT {UNKNOWN_NS}"


def _side_table(spec: SideLayout) -> str:
    return f'"{SIDE_TABLE_PREFIX}{spec.name}"'


def _side_schema(spec: SideLayout) -> str:
    keys = "".join(
        f"    k{i} {_SQL_TYPE[kind]} NOT NULL,\n" for i, (_, kind) in enumerate(spec.keys)
    )
    columns = "".join(f",\n    c{i} REAL" for i in range(len(spec.columns)))
    primary = ", ".join(f"k{i}" for i in range(len(spec.keys)))
    return f"""
CREATE TABLE IF NOT EXISTS {_side_table(spec)} (
{keys}    published_ns INTEGER NOT NULL{columns},
    PRIMARY KEY ({primary}, published_ns)
) WITHOUT ROWID;
"""


def _schema(key_type: str, id_type: str, n_values: int, label_type: str, known: bool) -> str:
    values = "".join(f"    v{i} REAL NOT NULL,\n" for i in range(n_values))
    known_column = f",\n    {_KNOWN_SQL}" if known else ""
    return f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    entity TEXT NOT NULL,
    entity_id {key_type} NOT NULL,
    time_ns INTEGER NOT NULL,
    event_id {id_type} NOT NULL,
{values}    label {label_type} NOT NULL DEFAULT 0{known_column},
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
        known = self.layout.known
        self._schema = _schema(key_type, _SQL_TYPE[fs.event_id_type], n, label_type, known)
        self._schema += "".join(_side_schema(spec) for spec in self.side.values())
        values = "".join(f"v{i}, " for i in range(n))
        label = f"label, {KNOWN_COLUMN}" if known else "label"
        # Each query is a range scan of the primary key, so ORDER BY costs no sort.
        self._fetch_sql = (
            f"SELECT time_ns, event_id, {values}{label} FROM {TABLE} WHERE entity = ? "
            "AND entity_id = ? AND time_ns > ? AND time_ns <= ? ORDER BY time_ns, event_id"
        )
        marks = ", ".join("?" * (n + 4))
        columns = f"entity, entity_id, time_ns, event_id, {values}{label}"
        self._insert_sql = f"INSERT OR IGNORE INTO {TABLE} ({columns}) VALUES ({marks}, 0"
        self._insert_sql += f", {UNKNOWN_NS})" if known else ")"
        self._load_sql = f"INSERT OR REPLACE INTO {TABLE} ({columns}) VALUES ({marks}, ?"
        self._load_sql += ", ?)" if known else ")"
        self._side_sql = {name: self._side_statements(spec) for name, spec in self.side.items()}
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._add_known_column()
        self._con.executescript(self._schema)
        self._lock = threading.Lock()
        self._claim()

    def _add_known_column(self) -> None:
        """A file made before per-row label times gains their column (existing rows:
        unknown); files of use cases without them are left as they are."""
        if not self.layout.known:
            return
        columns = [row[1] for row in self._con.execute(f"PRAGMA table_info({TABLE})")]
        if columns and KNOWN_COLUMN not in columns:
            self._con.execute(f"ALTER TABLE {TABLE} ADD COLUMN {_KNOWN_SQL}")

    @staticmethod
    def _side_statements(spec: SideLayout) -> tuple[str, str, str]:
        """The as-of probe, the upsert and the per-key prune of one side table."""
        table = _side_table(spec)
        match = " AND ".join(f"k{i} = ?" for i in range(len(spec.keys)))
        columns = ", ".join(["published_ns", *(f"c{i}" for i in range(len(spec.columns)))])
        marks = ", ".join("?" * (len(spec.keys) + 1 + len(spec.columns)))
        return (
            f"SELECT {columns} FROM {table} WHERE {match} AND published_ns <= ? "
            "ORDER BY published_ns DESC LIMIT 1",
            f"INSERT OR REPLACE INTO {table} VALUES ({marks})",
            f"DELETE FROM {table} WHERE {match} AND published_ns <= ?",
        )

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

    def fetch_request(
        self,
        keys: Sequence[Key],
        lo_ns: Sequence[int],
        hi_ns: int,
        side: Sequence[tuple[str, tuple[Key, ...]]],
    ) -> tuple[tuple[EntityState, ...], tuple[SideRow | None, ...]]:
        with self._lock:
            self._con.execute("BEGIN")
            try:
                rows = [
                    self._con.execute(self._fetch_sql, (entity, key, lo, hi_ns)).fetchall()
                    for entity, key, lo in zip(self.entities, keys, lo_ns, strict=True)
                ]
                found = [
                    self._con.execute(self._side_sql[table][0], (*key, hi_ns)).fetchone()
                    for table, key in side
                ]
            finally:
                self._con.execute("COMMIT")
        states = tuple(EntityState.from_rows(r, self.layout) for r in rows)
        return states, tuple(None if f is None else _side_row(f) for f in found)

    def _put_side(self, spec: SideLayout, rows: SideRows, prune_ns: int | None) -> None:
        _, upsert, prune = self._side_sql[spec.name]
        keys = list(zip(*(k.tolist() for k in rows.keys), strict=True))
        values = [np.where(np.isnan(v), None, v).tolist() for v in rows.values]
        params = zip(keys, rows.published_ns.tolist(), *values, strict=True)
        with self._lock:
            self._con.execute("BEGIN")
            try:
                self._con.executemany(upsert, ((*k, p, *v) for k, p, *v in params))
                if prune_ns is not None:
                    self._con.executemany(prune, ((*k, prune_ns) for k in dict.fromkeys(keys)))
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise

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
        known: np.ndarray | None = None,
    ) -> None:
        times, tids = time_ns.tolist(), ids.tolist()
        fields = (labels,) if known is None else (labels, known)
        ys = list(zip(*(f.tolist() for f in fields), strict=True))
        params = [
            (*y, entity, key, t, tid)
            for entity, column in zip(self.entities, keys, strict=True)
            for key, t, tid, y in zip(column.tolist(), times, tids, ys, strict=True)
        ]
        setting = "label = ?" if known is None else f"label = ?, {KNOWN_COLUMN} = ?"
        with self._lock:
            self._con.execute("BEGIN")
            self._con.executemany(
                f"UPDATE {TABLE} SET {setting} WHERE entity = ? AND entity_id = ? "
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
                if rows.known is not None:
                    fields = (*fields, rows.known)
                self._con.executemany(
                    self._load_sql,
                    zip([entity] * len(o), *(f[o].tolist() for f in fields), strict=True),
                )
            self._con.execute("COMMIT")
            self._con.executescript(self._schema)

    def prune(self, now_ns: int) -> int:
        """Drop every entry no window or as-of join can reach any more (old state expires)."""
        with self._lock:
            cur = self._con.execute(
                f"DELETE FROM {TABLE} WHERE time_ns <= ?", (now_ns - self.horizon_ns,)
            )
            dropped = cur.rowcount
            for spec in self.side.values():
                oldest = now_ns - spec.horizon_ns + spec.known_after_ns
                cur = self._con.execute(
                    f"DELETE FROM {_side_table(spec)} WHERE published_ns <= ?", (oldest,)
                )
                dropped += cur.rowcount
        return dropped

    def clear(self) -> None:
        with self._lock:
            self._con.execute("BEGIN")
            self._con.execute(f"DELETE FROM {TABLE}")
            for spec in self.side.values():
                self._con.execute(f"DELETE FROM {_side_table(spec)}")
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


def _side_row(row: tuple) -> SideRow:
    """A probed side-table row: publication time and its columns (NULL -> NaN)."""
    return int(row[0]), np.array(row[1:], dtype=np.float64)
