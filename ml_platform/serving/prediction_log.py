"""Append-only prediction log: every answer the API gives, plus shadow challenger scores.

Rows go to a SQLite table (WAL mode, so several BentoML workers can append while Dagster
reads) at ``<data_dir>/serving/prediction_log.sqlite``. The request path only puts an entry
on an in-memory queue; a daemon thread scores the shadow challenger (off the critical path),
serialises the features and commits in small batches. Nothing ever updates or deletes rows.

Monitoring reads it with :func:`read_prediction_log` (one column per feature).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.serving.scoring import ScoringModel
    from ml_platform.settings import Settings

log = logging.getLogger(__name__)

TABLE = "prediction_log"
ROLE_CHAMPION = "champion"
ROLE_SHADOW = "shadow"
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # fixed width, so text order == time order
#: Entries serialised between two GIL hand-backs (~16 x 40 µs, well under the 5 ms switch).
_CHUNK = 16

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at       TEXT    NOT NULL,   -- UTC, YYYY-MM-DDTHH:MM:SS.ffffff (sortable)
    request_id      TEXT    NOT NULL,   -- shared by a champion row and its shadow row
    role            TEXT    NOT NULL,   -- 'champion' (returned) or 'shadow' (never returned)
    endpoint        TEXT    NOT NULL,
    transaction_id  INTEGER NOT NULL,
    tx_datetime     TEXT    NOT NULL,
    customer_id     INTEGER NOT NULL,
    terminal_id     INTEGER NOT NULL,
    tx_amount       REAL    NOT NULL,
    features        TEXT    NOT NULL,   -- JSON object feature name -> value
    feature_version TEXT,
    score           REAL    NOT NULL,
    is_fraud        INTEGER NOT NULL,
    threshold       REAL    NOT NULL,
    model_name      TEXT    NOT NULL,
    model_version   TEXT    NOT NULL,
    latency_ms      REAL    NOT NULL    -- champion: whole request; shadow: its own scoring
);
CREATE INDEX IF NOT EXISTS {TABLE}_logged_at ON {TABLE} (logged_at);
CREATE INDEX IF NOT EXISTS {TABLE}_tx ON {TABLE} (transaction_id);
"""

_INSERT = f"""
INSERT INTO {TABLE} (logged_at, request_id, role, endpoint, transaction_id, tx_datetime,
    customer_id, terminal_id, tx_amount, features, feature_version, score, is_fraud,
    threshold, model_name, model_version, latency_ms)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def prediction_log_path(settings: Settings | None = None) -> Path:
    from ml_platform.settings import get_settings

    s = settings or get_settings()
    return s.data_dir / "serving" / "prediction_log.sqlite"


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the log database; WAL lets readers and writers overlap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(_SCHEMA)
    return con


@dataclass(slots=True)
class LogEntry:
    """What the request path hands over: raw values only, serialised later."""

    logged_at: float
    request_id: str
    endpoint: str
    transaction: dict[str, Any]
    features: np.ndarray
    score: float
    model: ScoringModel
    latency_ms: float
    shadow: ScoringModel | None = None


class PredictionLogWriter:
    """Queue + daemon thread writing :class:`LogEntry` rows (and shadow scores) to SQLite."""

    def __init__(
        self,
        path: Path,
        feature_columns: Sequence[str],
        *,
        flush_seconds: float = 0.05,
        max_queue: int = 100_000,
        max_batch: int = 2000,
    ) -> None:
        self.path = Path(path)
        self.feature_columns = list(feature_columns)
        self.flush_seconds = flush_seconds
        self.max_batch = max_batch
        self._queue: queue.Queue[LogEntry | None] = queue.Queue(maxsize=max_queue)
        self.written = 0
        self.dropped = 0
        self.shadow_errors = 0
        connect(self.path).close()  # create the table now: readers never see a missing table
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex

    def submit(self, entry: LogEntry) -> None:
        """Never blocks: when the queue is full the entry is counted as dropped."""
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is on disk (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)
        return self._queue.unfinished_tasks == 0

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        con = connect(self.path)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    self._queue.task_done()
                    return
                batch = [first]
                deadline = time.monotonic() + self.flush_seconds
                stop = False
                while len(batch) < self.max_batch:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.task_done()
                        stop = True
                        break
                    batch.append(item)
                try:
                    rows = []
                    for i in range(0, len(batch), _CHUNK):
                        rows += self._rows(batch[i : i + _CHUNK])
                        time.sleep(0)  # hand the GIL back: the request path must not wait
                    with con:
                        con.executemany(_INSERT, rows)
                    self.written += len(rows)
                except Exception:  # a logging failure must never take the service down
                    log.exception("prediction log: failed to write %d entries", len(batch))
                finally:
                    for _ in batch:
                        self._queue.task_done()
                if stop:
                    return
        finally:
            con.close()

    def _rows(self, batch: list[LogEntry]) -> list[tuple]:
        rows: list[tuple] = []
        shadow_groups: dict[int, list[int]] = {}
        feats = [self._features_json(e.features) for e in batch]  # once per entry
        for i, e in enumerate(batch):
            rows.append(self._row(e, ROLE_CHAMPION, e.model, e.score, e.latency_ms, feats[i]))
            if e.shadow is not None:
                shadow_groups.setdefault(id(e.shadow), []).append(i)
        # shadow challenger: one vectorised call per model over the whole batch
        for idx in shadow_groups.values():
            model = batch[idx[0]].shadow
            assert model is not None
            x = np.vstack([batch[i].features for i in idx])
            t = time.perf_counter()
            try:
                scores = model.score(x)
            except Exception:
                self.shadow_errors += len(idx)
                log.exception("shadow model %s v%s failed", model.name, model.version)
                continue
            per_row_ms = (time.perf_counter() - t) * 1000 / len(idx)
            for i, score in zip(idx, scores, strict=True):
                rows.append(
                    self._row(batch[i], ROLE_SHADOW, model, float(score), per_row_ms, feats[i])
                )
        return rows

    def _features_json(self, x: np.ndarray) -> str:
        return json.dumps(dict(zip(self.feature_columns, map(float, x), strict=True)))

    def _row(
        self,
        e: LogEntry,
        role: str,
        model: ScoringModel,
        score: float,
        latency_ms: float,
        features_json: str,
    ) -> tuple:
        tx = e.transaction
        return (
            datetime.fromtimestamp(e.logged_at, UTC).strftime(_TS_FORMAT),
            e.request_id,
            role,
            e.endpoint,
            int(tx["transaction_id"]),
            _iso(tx["tx_datetime"]),
            int(tx["customer_id"]),
            int(tx["terminal_id"]),
            float(tx["tx_amount"]),
            features_json,
            model.feature_version,
            float(score),
            int(score >= model.threshold),
            float(model.threshold),
            model.name,
            model.version,
            float(latency_ms),
        )


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def read_prediction_log(
    path: Path | None = None,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    role: str | None = None,
    expand_features: bool = True,
) -> pd.DataFrame:
    """The log as a DataFrame (read-only), optionally one column per feature.

    With ``expand_features`` every FEATURE_COLUMNS name is a column (``tx_amount`` is the
    request column, which the feature of that name equals).
    ``since``/``until`` filter on ``logged_at`` (UTC, ``until`` exclusive); ``role`` is
    ``'champion'`` or ``'shadow'``. An absent log reads as an empty frame.
    """
    import pandas as pd

    path = Path(path) if path is not None else prediction_log_path()
    if role not in (None, ROLE_CHAMPION, ROLE_SHADOW):
        raise ValueError(f"role: must be 'champion' or 'shadow', got {role!r}")
    where, params = [], []
    for op, value in ((">=", since), ("<", until)):
        if value is not None:
            where.append(f"logged_at {op} ?")
            params.append(_utc_iso(value))
    if role is not None:
        where.append("role = ?")
        params.append(role)
    sql = f"SELECT * FROM {TABLE}" + (f" WHERE {' AND '.join(where)}" if where else "")
    if not path.exists():
        con = sqlite3.connect(":memory:")
        con.executescript(_SCHEMA)
    else:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        df = pd.read_sql_query(sql + " ORDER BY id", con, params=params)
    finally:
        con.close()
    df["logged_at"] = pd.to_datetime(df["logged_at"], format=_TS_FORMAT)
    df["tx_datetime"] = pd.to_datetime(df["tx_datetime"], format="ISO8601")
    df["is_fraud"] = df["is_fraud"].astype(bool)
    if expand_features:
        if len(df):
            records = [json.loads(f) for f in df["features"]]
            feats = pd.DataFrame.from_records(records, index=df.index)
        else:
            from ml_platform.features import FEATURE_COLUMNS

            feats = pd.DataFrame({c: pd.Series(dtype="float64") for c in FEATURE_COLUMNS})
        # a feature named like a request column (tx_amount) is that very value: keep one
        feats = feats.drop(columns=[c for c in feats.columns if c in df.columns])
        df = pd.concat([df.drop(columns="features"), feats], axis=1)
    return df


def _utc_iso(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_TS_FORMAT)
