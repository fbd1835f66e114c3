"""Append-only prediction log: every answer the API gives, plus shadow challenger scores.

Rows go to a SQLite table (WAL mode, so several BentoML workers can append while Dagster
reads) at ``<data_dir>/serving/prediction_log.sqlite`` (another use case's:
``prediction_log_<name>.sqlite``). The request path only appends
an entry to an in-memory deque; a daemon thread scores the shadow challenger (off the
critical path), serialises the features and commits in small batches. Nothing ever
updates or deletes rows. The request columns are the use case's request fields, typed
from its schema (:func:`log_layout`).

Monitoring reads it with :func:`read_prediction_log` (one column per feature).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.serving.scoring import ScoringModel
    from ml_platform.settings import Settings
    from ml_platform.use_cases.loader import UseCase

log = logging.getLogger(__name__)

TABLE = "prediction_log"
ROLE_CHAMPION = "champion"
ROLE_SHADOW = "shadow"
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"  # fixed width, so text order == time order
#: Entries serialised between two GIL hand-backs (~4 x 25 µs: a request waits at most that).
_CHUNK = 4

#: SQLite type of each declared column type (a datetime is ISO 8601 text).
SQL_TYPES = {"int": "INTEGER", "float": "REAL", "string": "TEXT", "datetime": "TEXT"}
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "int": int,
    "float": float,
    "string": str,
    "datetime": lambda v: _iso(v),
}


@dataclass(frozen=True)
class LogLayout:
    """The table's columns for one use case: its request fields (typed from the schema)
    between the request's identity and the answer; one feature column per feature on read."""

    request: tuple[tuple[str, str], ...]  # (field, declared type), in request order
    event_id: str | None  # indexed
    features: tuple[str, ...]
    decision: str  # the answer's yes/no field (score >= threshold)

    @cached_property
    def schema_sql(self) -> str:
        request = "".join(
            f"    {name:<15} {SQL_TYPES[typ]:<7} NOT NULL,\n" for name, typ in self.request
        )
        # the index keeps the name of the first layout: existing logs already have it
        index = (
            f"CREATE INDEX IF NOT EXISTS {TABLE}_tx ON {TABLE} ({self.event_id});\n"
            if self.event_id
            else ""
        )
        return f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at       TEXT    NOT NULL,   -- UTC, YYYY-MM-DDTHH:MM:SS.ffffff (sortable)
    request_id      TEXT    NOT NULL,   -- shared by a champion row and its shadow row
    role            TEXT    NOT NULL,   -- 'champion' (returned) or 'shadow' (never returned)
    endpoint        TEXT    NOT NULL,
{request}    features        TEXT    NOT NULL,   -- JSON object feature name -> value
    feature_version TEXT,
    score           REAL    NOT NULL,
    {self.decision:<15} INTEGER NOT NULL,   -- score >= threshold
    threshold       REAL    NOT NULL,
    model_name      TEXT    NOT NULL,
    model_version   TEXT    NOT NULL,
    latency_ms      REAL    NOT NULL    -- champion: whole request; shadow: its own scoring
);
CREATE INDEX IF NOT EXISTS {TABLE}_logged_at ON {TABLE} (logged_at);
{index}"""

    @cached_property
    def insert_sql(self) -> str:
        columns = [
            "logged_at",
            "request_id",
            "role",
            "endpoint",
            *(name for name, _ in self.request),
            "features",
            "feature_version",
            "score",
            self.decision,
            "threshold",
            "model_name",
            "model_version",
            "latency_ms",
        ]
        marks = ", ".join("?" * len(columns))
        return f"INSERT INTO {TABLE} ({', '.join(columns)}) VALUES ({marks})"

    @cached_property
    def converters(self) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
        return tuple((name, _CONVERT[typ]) for name, typ in self.request)

    @property
    def datetime_columns(self) -> list[str]:
        return [name for name, typ in self.request if typ == "datetime"]


def log_layout(use_case: UseCase) -> LogLayout:
    """The prediction log's layout derived from the use case's request fields; the decision
    column is named like the API answer's. An event id the schema derives (the request
    does not carry it) comes first: the log joins the lake's labels on it."""
    from ml_platform.serving.schemas import answer_fields

    s = use_case.spec.event_schema
    event_id = s.event_id.column
    request = tuple((c, use_case.columns[c]) for c in s.request)
    if event_id not in s.request:
        request = ((event_id, s.event_id.type), *request)
    decision = answer_fields(use_case)[1]
    return LogLayout(request, event_id, tuple(use_case.feature_names), decision)


@cache
def served_layout() -> LogLayout:
    """The layout of the use case the API serves (the default of writer and reader)."""
    from ml_platform.serving.schemas import served_use_case

    return log_layout(served_use_case())


def prediction_log_path(
    settings: Settings | None = None, use_case: UseCase | str | None = None
) -> Path:
    """The log of a use case: ``prediction_log.sqlite`` for the served (default) one,
    ``prediction_log_<name>.sqlite`` for any other, so two use cases' services sharing a
    data directory never write one table with two layouts."""
    from ml_platform.serving.schemas import SERVED_USE_CASE
    from ml_platform.settings import get_settings

    s = settings or get_settings()
    name = use_case if isinstance(use_case, str) or use_case is None else use_case.name
    suffix = "" if name in (None, SERVED_USE_CASE) else f"_{name}"
    return s.data_dir / "serving" / f"prediction_log{suffix}.sqlite"


def connect(path: Path, layout: LogLayout | None = None) -> sqlite3.Connection:
    """Open (and create) the log database; WAL lets readers and writers overlap."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript((layout or served_layout()).schema_sql)
    return con


@dataclass(slots=True)
class LogEntry:
    """What the request path hands over: raw values only, serialised later."""

    logged_at: float
    request_id: str | None  # None: the writer draws a uuid4 (off the request path)
    endpoint: str
    transaction: dict[str, Any]
    features: np.ndarray
    score: float
    model: ScoringModel
    latency_ms: float
    shadow: ScoringModel | None = None


class PredictionLogWriter:
    """Pending list + daemon thread writing :class:`LogEntry` rows (and shadow scores) to SQLite.

    ``submit`` is a deque append: no lock, no condition, no thread woken per request (a
    wake-up per request costs the event loop a GIL hand-over each time). The writer wakes
    every ``flush_seconds`` and writes whatever is pending in one transaction.
    """

    def __init__(
        self,
        path: Path,
        feature_columns: Sequence[str],
        *,
        flush_seconds: float = 0.05,
        max_queue: int = 100_000,
        max_batch: int = 2000,
        layout: LogLayout | None = None,
    ) -> None:
        self.path = Path(path)
        self.layout = layout or served_layout()
        self.feature_columns = list(feature_columns)
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.max_batch = max_batch
        self._pending: deque[LogEntry] = deque()
        self._busy = False  # the writer holds entries taken off _pending, not yet on disk
        self._wake = threading.Event()  # cuts the writer's wait short (flush, close)
        self._stopping = False
        self.written = 0
        self.dropped = 0
        self.shadow_errors = 0
        # create the table now: readers never see a missing table
        connect(self.path, self.layout).close()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex

    def submit(self, entry: LogEntry) -> None:
        """Never blocks: when ``max_queue`` entries are pending the entry is counted as dropped."""
        if len(self._pending) >= self.max_queue or self._stopping:
            self.dropped += 1
        else:
            self._pending.append(entry)

    @property
    def pending(self) -> int:
        """Entries submitted and not yet taken by the writer thread."""
        return len(self._pending)

    def stats(self) -> dict[str, int]:
        """Rows committed, entries dropped (queue full or closing), shadow scorings failed."""
        return {
            "written": self.written,
            "dropped": self.dropped,
            "shadow_errors": self.shadow_errors,
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is on disk (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while not self._drained() and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.005)
        return self._drained()

    def _drained(self) -> bool:
        return not self._busy and not self._pending

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        con = connect(self.path, self.layout)
        try:
            while True:
                stop = self._stopping
                if not self._pending:
                    if stop:
                        return
                    self._wake.wait(self.flush_seconds)
                    self._wake.clear()
                    continue
                self._busy = True  # before taking entries: flush() never sees a gap
                batch = []
                while self._pending and len(batch) < self.max_batch:
                    batch.append(self._pending.popleft())
                try:
                    rows = self._rows(batch)
                    with con:
                        con.executemany(self.layout.insert_sql, rows)
                    self.written += len(rows)
                except Exception:  # a logging failure must never take the service down
                    log.exception("prediction log: failed to write %d entries", len(batch))
                finally:
                    self._busy = False
                if not stop and len(self._pending) < self.max_batch:
                    self._wake.wait(self.flush_seconds)  # let the next batch gather
                    self._wake.clear()
        finally:
            con.close()

    def _rows(self, batch: list[LogEntry]) -> list[tuple]:
        """Rows of a batch: per chunk of entries their champion rows, then their shadow rows.

        The shadow challenger is scored first, one vectorised call per model over the whole
        batch (LightGBM releases the GIL); rows are then built in small chunks with the GIL
        handed back between them, so a request never waits long behind the writer.
        """
        shadow = self._shadow_scores(batch)
        rows: list[tuple] = []
        for start in range(0, len(batch), _CHUNK):
            shadow_rows = []
            for i in range(start, min(start + _CHUNK, len(batch))):
                e = batch[i]
                if e.request_id is None:  # shared by the champion row and its shadow row
                    e.request_id = self.new_request_id()
                head = (
                    datetime.fromtimestamp(e.logged_at, UTC).strftime(_TS_FORMAT),
                    e.request_id,
                )
                feats = self._features_json(e.features)  # once per entry
                champion = self._row(e, head, ROLE_CHAMPION, e.model, e.score, e.latency_ms, feats)
                rows.append(champion)
                if i in shadow:
                    model, score, ms = shadow[i]
                    shadow_rows.append(self._row(e, head, ROLE_SHADOW, model, score, ms, feats))
            rows += shadow_rows
            time.sleep(0)  # hand the GIL back: the request path must not wait
        return rows

    def _shadow_scores(self, batch: list[LogEntry]) -> dict[int, tuple[ScoringModel, float, float]]:
        """Entry index -> (shadow model, score, per-row ms); a failing model is counted."""
        groups: dict[int, list[int]] = {}
        for i, e in enumerate(batch):
            if e.shadow is not None:
                groups.setdefault(id(e.shadow), []).append(i)
        out: dict[int, tuple[ScoringModel, float, float]] = {}
        for idx in groups.values():
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
            for i, score in zip(idx, scores.tolist(), strict=True):
                out[i] = (model, score, per_row_ms)
        return out

    def _features_json(self, x: np.ndarray) -> str:
        values = np.asarray(x, dtype=np.float64).tolist()  # the same floats as map(float, x)
        return json.dumps(dict(zip(self.feature_columns, values, strict=True)))

    def _row(
        self,
        e: LogEntry,
        head: tuple[str, str | None],
        role: str,
        model: ScoringModel,
        score: float,
        latency_ms: float,
        features_json: str,
    ) -> tuple:
        request = e.transaction
        return (
            *head,  # logged_at, request_id
            role,
            e.endpoint,
            *[convert(request[name]) for name, convert in self.layout.converters],
            features_json,
            model.feature_version,
            float(score),
            int(score > model.threshold if model.strict else score >= model.threshold),
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
    layout: LogLayout | None = None,
) -> pd.DataFrame:
    """The log as a DataFrame (read-only), optionally one column per feature.

    ``layout``: the use case's (default: the served one's); its datetime request fields
    are parsed. With ``expand_features`` every feature is a column (a feature named like
    a request field, e.g. a ``value`` feature, is that request column, which it equals).
    ``since``/``until`` filter on ``logged_at`` (UTC, ``until`` exclusive); ``role`` is
    ``'champion'`` or ``'shadow'``. An absent log reads as an empty frame.
    """
    import pandas as pd

    layout = layout or served_layout()
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
        con.executescript(layout.schema_sql)
    else:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        df = pd.read_sql_query(sql + " ORDER BY id", con, params=params)
    finally:
        con.close()
    df["logged_at"] = pd.to_datetime(df["logged_at"], format=_TS_FORMAT)
    for col in layout.datetime_columns:
        df[col] = pd.to_datetime(df[col], format="ISO8601")
    df[layout.decision] = df[layout.decision].astype(bool)
    if expand_features:
        if len(df):
            records = [json.loads(f) for f in df["features"]]
            feats = pd.DataFrame.from_records(records, index=df.index)
        else:
            feats = pd.DataFrame({c: pd.Series(dtype="float64") for c in layout.features})
        # a feature named like a request column is that very value: keep one
        feats = feats.drop(columns=[c for c in feats.columns if c in df.columns])
        df = pd.concat([df.drop(columns="features"), feats], axis=1)
    return df


def _utc_iso(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(_TS_FORMAT)
