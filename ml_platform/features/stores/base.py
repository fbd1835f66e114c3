"""The online store interface: bounded per-entity event state for the online engine.

A store serves one use case (its ``FeatureSet``: entities, event id, value and label
columns). Each event is kept under each of its entity keys as ``(time_ns, event id,
values..., label)``; ``label`` is set only once a matured label said so (an unknown label
counts as 0, like a negative one). An entity keeps only what the largest window plus the
label delay needs (``horizon_ns``); idle entities expire. Keys and files carry the use
case's name, so two use cases never share state.

The store's **watermark** is the newest event time it holds, persisted in the store itself:
``load`` sets it, ``append`` only moves it forward. Pruning on write removes an entity's
entries at or before ``watermark - horizon``, so a late or early request never decides on
its own how much history is kept (the API refuses timestamps from the future).
The API here (fetch, append, watermark, entity counts) says nothing of the layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.features.definitions import (
    DAY_NS,
    DEFAULT_USE_CASE,
    FeatureSet,
    check_label_delay,
    feature_set,
    horizon_days,
)

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

Key = int | str


@dataclass(frozen=True)
class EntityState:
    """One entity's recent events, sorted by ``(time, event id)``, as small numpy arrays."""

    times: np.ndarray  # int64 ns, naive UTC
    ids: np.ndarray  # int64, or unicode for string event ids
    values: tuple[np.ndarray, ...]  # float64, one array per value column of the use case
    labels: np.ndarray  # int64 (binary: 1 = matured positive) or float64 (regression)

    @classmethod
    def empty(cls, layout: StateLayout) -> EntityState:
        return cls(
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=layout.id_dtype),
            tuple(np.zeros(0, dtype=np.float64) for _ in range(layout.n_values)),
            np.zeros(0, dtype=layout.label_dtype),
        )

    @classmethod
    def from_rows(cls, rows: list[tuple], layout: StateLayout) -> EntityState:
        """From ``(time_ns, id, value..., label)`` tuples."""
        if not rows:
            return cls.empty(layout)
        t, i, *values, y = zip(*rows, strict=True)
        return cls(
            np.array(t, dtype=np.int64),
            np.array(i, dtype=layout.id_dtype),
            tuple([np.array(v, dtype=np.float64) for v in values]),
            np.array(y, dtype=layout.label_dtype),
        )


@dataclass(frozen=True)
class StateLayout:
    """The dtypes of a use case's entity state, derived from its ``FeatureSet``."""

    n_values: int
    id_dtype: type | str
    label_dtype: type

    @classmethod
    def of(cls, fs: FeatureSet) -> StateLayout:
        return cls(
            n_values=len(fs.value_columns),
            id_dtype=np.int64 if fs.event_id_type == "int" else np.str_,
            label_dtype=np.int64 if fs.label_task == "binary" else np.float64,
        )


@dataclass(frozen=True)
class EventRecord:
    """An event as the store keeps it: timestamp in ns, entity keys in the order of the
    use case's entities, values in the order of its value columns (no label)."""

    event_id: Key
    time_ns: int
    keys: tuple[Key, ...]
    values: tuple[float, ...]


class TxRecord(EventRecord):
    """An event of the default use case from positional fields: id, time (ns), its entity
    keys, then its values: the short form existing callers use."""

    def __init__(self, event_id: Key, time_ns: int, *fields: Any) -> None:
        n = len(feature_set().entities)
        super().__init__(event_id, time_ns, tuple(fields[:n]), tuple(fields[n:]))


@dataclass(frozen=True)
class LoadRows:
    """Rows to bulk-insert: one array per field, entity keys and values in use-case order."""

    time_ns: np.ndarray
    ids: np.ndarray
    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.time_ns)


class OnlineStore(ABC):
    """Per-entity state of one use case; implementations make a fetch one round trip."""

    #: what ``online_store`` setting selects this implementation
    kind: str = ""

    def __init__(
        self, label_delay_days: int = 7, use_case: UseCase | str = DEFAULT_USE_CASE
    ) -> None:
        self.label_delay_days = check_label_delay(label_delay_days)
        #: the use case as given (a name or a loaded declaration): the engine reads it too
        self.declaration = use_case
        self.features = feature_set(use_case)
        self.use_case = self.features.use_case
        self.entities = self.features.entity_columns
        self.layout = StateLayout.of(self.features)
        self.horizon_ns = horizon_days(self.label_delay_days, use_case) * DAY_NS

    @abstractmethod
    def fetch_states(
        self, keys: Sequence[Key], lo_ns: Sequence[int], hi_ns: int
    ) -> tuple[EntityState, ...]:
        """Each entity's state with ``lo_ns[i] < time_ns <= hi_ns``, sorted by time."""

    def fetch(self, *args: Any) -> tuple[EntityState, ...]:
        """``fetch(key..., lo_ns..., hi_ns)``: one key and one lower bound per entity."""
        n = len(self.entities)
        if len(args) != 2 * n + 1:
            raise TypeError(f"fetch: expected {n} keys, {n} lower bounds and hi_ns")
        return self.fetch_states(args[:n], args[n : 2 * n], args[-1])

    @abstractmethod
    def append(self, event: EventRecord) -> None:
        """Record one event (no label), advance the watermark to it if it is newer,
        then drop its entities' entries at or before ``watermark - horizon``."""

    def set_labels(self, labeled: pd.DataFrame) -> int:
        """Store matured labels (the use case's columns incl. its label); returns how many
        were stored (binary: the positives; regression: the non-zero ones)."""
        fs = self.features
        _require(labeled, (fs.event_id, fs.event_time, *fs.entity_columns, fs.label), "labels")
        label = labeled[fs.label].to_numpy().astype(self.layout.label_dtype)
        keep = label == 1 if fs.label_task == "binary" else label != 0
        rows = labeled[keep]
        if not len(rows):
            return 0
        self._set_labels(
            np.array([to_ns(v) for v in rows[fs.event_time]], dtype=np.int64),
            rows[fs.event_id].to_numpy(self.layout.id_dtype),
            tuple(rows[c].to_numpy() for c in fs.entity_columns),
            label[keep],
        )
        return len(rows)

    #: the name the default use case's callers know
    set_frauds = set_labels

    @abstractmethod
    def _set_labels(
        self,
        time_ns: np.ndarray,
        ids: np.ndarray,
        keys: tuple[np.ndarray, ...],
        labels: np.ndarray,
    ) -> None:
        """Mark these events' labels under each of their entities."""

    @abstractmethod
    def _bulk_insert(self, rows: LoadRows) -> None:
        """Insert rows (an empty store: ``load`` clears it first)."""

    @abstractmethod
    def clear(self) -> None:
        """Remove every entity and the watermark of this store (its namespace only)."""

    @abstractmethod
    def entity_counts(self) -> dict[str, int]:
        """Number of entities with state, per entity kind (may scan: not per request)."""

    @abstractmethod
    def watermark_ns(self) -> int | None:
        """Newest event time the store holds (naive-UTC ns); None while it is empty."""

    @abstractmethod
    def _set_watermark(self, time_ns: int) -> None:
        """Replace the watermark (``clear`` removes it); only ``load`` may move it back."""

    def describe(self) -> dict[str, Any]:
        """Kind, watermark (ISO) and entity counts: what the demo and ``GET /model`` show."""
        return {
            "kind": self.kind,
            "watermark": ns_to_iso(self.watermark_ns()),
            "entities": self.entity_counts(),
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, events: pd.DataFrame, as_of: pd.Timestamp | str) -> dict[str, int]:
        """Replace the state with what the online engine needs at ``as_of``.

        Keeps events in ``(as_of - horizon, as_of]``; a label is loaded only if it has
        matured (event at or before ``as_of - label delay``). The watermark becomes the
        newest event kept (none kept: the store is empty and has no watermark).
        """
        from ml_platform.features.batch import naive_utc

        fs = self.features
        _require(events, (*fs.input_columns, fs.label), "transactions")
        as_of_ns = to_ns(as_of)
        t = naive_utc(events[fs.event_time]).to_numpy("datetime64[ns]").view(np.int64)
        keep = (t > as_of_ns - self.horizon_ns) & (t <= as_of_ns)
        matured = t <= as_of_ns - self.label_delay_days * DAY_NS
        label = events[fs.label].to_numpy().astype(self.layout.label_dtype) * matured
        rows = LoadRows(
            time_ns=t[keep],
            ids=events[fs.event_id].to_numpy(self.layout.id_dtype)[keep],
            keys=tuple(_keys(events[c], kind)[keep] for c, kind in fs.entities),
            values=tuple(events[c].to_numpy(np.float64)[keep] for c in fs.value_columns),
            labels=label[keep],
        )
        self.clear()
        self._bulk_insert(rows)
        if len(rows):
            self._set_watermark(int(rows.time_ns.max()))
        counts = self.entity_counts()
        return {"rows": len(rows), "labels": int((rows.labels != 0).sum()), **counts}


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")


def _keys(column: pd.Series, kind: str) -> np.ndarray:
    """An entity-key column as int64 or Python strings (its declared type)."""
    return column.to_numpy(np.int64) if kind == "int" else column.astype(str).to_numpy(object)


_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def to_ns(value: object) -> int:
    """A timestamp (datetime, str, numpy, pandas; aware -> UTC) as naive-UTC nanoseconds."""
    if type(value) is datetime and value.tzinfo is None and 1678 <= value.year <= 2261:
        # the request path's case: exact integer arithmetic, no pandas Timestamp (~10 µs)
        return (value - _EPOCH) // _MICROSECOND * 1000
    ts = value if isinstance(value, pd.Timestamp) else pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError(f"not a timestamp: {value!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.value)


def ns_to_iso(time_ns: int | None) -> str | None:
    """Naive-UTC nanoseconds as an ISO 8601 string (None stays None)."""
    return None if time_ns is None else pd.Timestamp(time_ns).isoformat()


def open_store(
    settings: object | None = None,
    label_delay_days: int | None = None,
    use_case: UseCase | str = DEFAULT_USE_CASE,
) -> OnlineStore:
    """The store the settings select (``online_store``: sqlite file or redis) for a use case."""
    from ml_platform.settings import get_settings

    s = settings or get_settings()
    d = s.label_delay_days if label_delay_days is None else label_delay_days
    if s.online_store == "redis":
        from ml_platform.features.stores.redis import RedisStore

        return RedisStore(
            s.redis_url,
            prefix=f"{s.redis_prefix}:fs",
            label_delay_days=d,
            timeout_s=s.redis_timeout_seconds,
            use_case=use_case,
        )
    from ml_platform.features.stores.sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(s, use_case), label_delay_days=d, use_case=use_case)


def sqlite_path(settings: object, use_case: UseCase | str = DEFAULT_USE_CASE) -> Path:
    """The embedded store's file of a use case, under the data directory."""
    name = use_case if isinstance(use_case, str) else use_case.name
    return Path(settings.data_dir) / f"online_store_{name}.sqlite"
