"""The online store interface: bounded per-entity event state for the online engine.

A store serves one use case (its ``FeatureSet``: entities, event id, value and label
columns). Each event is kept under each of its entity keys as ``(time_ns, event id,
values..., label)``; ``label`` is set only once a matured label said so (an unknown label
counts as 0, like a negative one). An entity keeps only what the largest window plus the
label delay needs (``horizon_ns``); idle entities expire. Keys and files carry the use
case's name, so two use cases never share state.

A use case whose labels are known at a per-row time (``FeatureSet.known_at``) also keeps,
per event, the time its label became known (``UNKNOWN_NS`` until a label with a time
arrives): a matured window of such a label counts an event from that time on, so a label
maturing later is counted from its own time, never before.

Side tables (as-of joins) are kept per key: each row with the time it is published
(``time + known_after``), within ``FeatureSet.side_horizon_ns`` of its table; a request reads
the newest row published at or before its time, in the same round trip as the entities.

The store's **watermark** is the newest event time it holds, persisted in the store itself:
``load`` sets it, ``append`` only moves it forward. Pruning on write removes an entity's
entries at or before ``watermark - horizon`` (side-table rows likewise behind their table's
horizon), so a late or early request never decides on its own how much history is kept
(the API refuses timestamps from the future).
The API here (fetch, append, watermark, entity counts) says nothing of the layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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
#: the label-known time of an event whose label is not known (yet): after every real time
UNKNOWN_NS = np.iinfo(np.int64).max
#: the newest side-table row of a key: its publication time (ns) and its columns (NaN = null)
SideRow = tuple[int, np.ndarray]


@dataclass(frozen=True)
class EntityState:
    """One entity's recent events, sorted by ``(time, event id)``, as small numpy arrays."""

    times: np.ndarray  # int64 ns, naive UTC
    ids: np.ndarray  # int64, or unicode for string event ids
    values: tuple[np.ndarray, ...]  # float64, one array per value column of the use case
    labels: np.ndarray  # int64 (binary: 1 = matured positive) or float64 (regression)
    #: int64 ns each label became known (``UNKNOWN_NS``: not yet); per-row label times only
    known: np.ndarray | None = None

    @classmethod
    def empty(cls, layout: StateLayout) -> EntityState:
        return cls(
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=layout.id_dtype),
            tuple(np.zeros(0, dtype=np.float64) for _ in range(layout.n_values)),
            np.zeros(0, dtype=layout.label_dtype),
            np.zeros(0, dtype=np.int64) if layout.known else None,
        )

    @classmethod
    def from_rows(cls, rows: list[tuple], layout: StateLayout) -> EntityState:
        """From ``(time_ns, id, value..., label)`` tuples (``..., label, known_ns)`` with
        per-row label times)."""
        if not rows:
            return cls.empty(layout)
        if layout.known:
            t, i, *values, y, k = zip(*rows, strict=True)
            known = np.array(k, dtype=np.int64)
        else:
            t, i, *values, y = zip(*rows, strict=True)
            known = None
        return cls(
            np.array(t, dtype=np.int64),
            np.array(i, dtype=layout.id_dtype),
            tuple([np.array(v, dtype=np.float64) for v in values]),
            np.array(y, dtype=layout.label_dtype),
            known,
        )


@dataclass(frozen=True)
class StateLayout:
    """The dtypes of a use case's entity state, derived from its ``FeatureSet``."""

    n_values: int
    id_dtype: type | str
    label_dtype: type
    #: each event keeps its label-known time (some feature reads a per-row label time)
    known: bool = False

    @classmethod
    def of(cls, fs: FeatureSet) -> StateLayout:
        return cls(
            n_values=len(fs.value_columns),
            id_dtype=np.int64 if fs.event_id_type == "int" else np.str_,
            label_dtype=np.int64 if fs.label_task == "binary" else np.float64,
            known=any(f.known_at is not None for f in fs.features),
        )


@dataclass(frozen=True)
class SideLayout:
    """What the store keeps of one side table: its keys, the columns some as-of feature
    reads, when a row is published and how long after that it can still be read."""

    name: str
    keys: tuple[tuple[str, str], ...]
    time: str
    columns: tuple[str, ...]
    known_after_ns: int
    #: rows with ``time <= watermark - horizon_ns`` are read by no request any more
    horizon_ns: int

    @classmethod
    def all_of(cls, fs: FeatureSet) -> dict[str, SideLayout]:
        """The side tables some feature reads, by name (none for most use cases)."""
        read: dict[str, list[str]] = {}
        for f in fs.features:
            if f.aggregate == "asof":
                read.setdefault(f.table, []).append(f.value)
        out = {}
        for name, columns in read.items():
            t = fs.side_table(name)
            out[name] = cls(
                name,
                t.keys,
                t.time,
                tuple(c for c in t.columns if c in columns),
                t.known_after_ns,
                fs.side_horizon_ns(name),
            )
        return out


@dataclass(frozen=True)
class SideRows:
    """Side-table rows to store: key arrays in the table's key order, publication times
    (``time + known_after``, ns) and one float64 array per kept column (NaN = null)."""

    keys: tuple[np.ndarray, ...]
    published_ns: np.ndarray
    values: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return len(self.published_ns)

    def take(self, mask: np.ndarray) -> SideRows:
        return SideRows(
            tuple(k[mask] for k in self.keys),
            self.published_ns[mask],
            tuple(v[mask] for v in self.values),
        )


@dataclass(frozen=True)
class EventRecord:
    """An event as the store keeps it: timestamp in ns, entity keys in the order of the
    use case's entities, values in the order of its value columns (no label); ``joins``
    the as-of join columns that are not entities (``FeatureSet.join_columns``)."""

    event_id: Key
    time_ns: int
    keys: tuple[Key, ...]
    values: tuple[float, ...]
    joins: tuple[Key, ...] = ()


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
    known: np.ndarray | None = None  # label-known times (ns, ``UNKNOWN_NS``): per-row labels

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
        #: the side tables some feature reads (as-of joins), by name
        self.side = SideLayout.all_of(self.features)
        #: labels loaded after the fixed delay too (some delayed feature has no per-row time)
        self._fixed_delay_labels = any(
            f.delayed and f.known_at is None for f in self.features.features
        )

    @abstractmethod
    def fetch_states(
        self, keys: Sequence[Key], lo_ns: Sequence[int], hi_ns: int
    ) -> tuple[EntityState, ...]:
        """Each entity's state with ``lo_ns[i] < time_ns <= hi_ns``, sorted by time."""

    @abstractmethod
    def fetch_request(
        self,
        keys: Sequence[Key],
        lo_ns: Sequence[int],
        hi_ns: int,
        side: Sequence[tuple[str, tuple[Key, ...]]],
    ) -> tuple[tuple[EntityState, ...], tuple[SideRow | None, ...]]:
        """``fetch_states`` plus, per ``(table, key values)``, the newest row of that key
        published at or before ``hi_ns`` (None: none kept): one round trip / one snapshot."""

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
        were stored (binary: the positives; regression: the non-zero ones). With per-row
        label times (``FeatureSet.known_at``, a column of ``labeled`` too) every finite label
        with a time is stored with it, zeros included (a known 0 counts), and a label
        without a time only where the fixed delay reads it."""
        fs = self.features
        columns = (fs.event_id, fs.event_time, *fs.entity_columns, fs.label)
        known = None
        if self.layout.known:
            _require(labeled, (*columns, fs.known_at), "labels")
            label, known = self._per_row_labels(labeled, None)
            keep = known != UNKNOWN_NS
            if self._fixed_delay_labels:
                keep |= label != 0
            known = known[keep]
        else:
            _require(labeled, columns, "labels")
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
            known,
        )
        return len(rows)

    def _per_row_labels(
        self, frame: pd.DataFrame, as_of_ns: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-row labels: the label (0 where not finite) and the time it became known
        (``UNKNOWN_NS`` where the time is missing, the label is not finite, or it comes after
        ``as_of_ns``)."""
        fs = self.features
        y = frame[fs.label].to_numpy(np.float64)
        finite = np.isfinite(y)
        known = times_ns(frame[fs.known_at], fs.known_at, missing=UNKNOWN_NS)
        known_now = finite if as_of_ns is None else finite & (known <= as_of_ns)
        known = np.where(known_now, known, UNKNOWN_NS)
        return np.where(finite, y, 0).astype(self.layout.label_dtype), known

    #: the name the default use case's callers know
    set_frauds = set_labels

    @abstractmethod
    def _set_labels(
        self,
        time_ns: np.ndarray,
        ids: np.ndarray,
        keys: tuple[np.ndarray, ...],
        labels: np.ndarray,
        known: np.ndarray | None = None,
    ) -> None:
        """Mark these events' labels (and, per-row label times, when each became known)
        under each of their entities."""

    def put_side_rows(self, table: str, rows: pd.DataFrame) -> int:
        """Store rows of a side table (its keys, time and columns; idempotent: a row with
        the same keys and time replaces the stored one); the live path for new rows.
        Rows at or before the table's horizon behind the watermark are dropped, and each
        key written is pruned against it. Returns how many rows were kept."""
        spec = self._side_layout(table)
        if spec is None:
            return 0
        side = self._side_rows(spec, rows)
        watermark = self.watermark_ns()
        prune = None if watermark is None else watermark - spec.horizon_ns + spec.known_after_ns
        if prune is not None:
            side = side.take(side.published_ns > prune)
        if len(side):
            self._put_side(spec, side, prune)
        return len(side)

    def _side_layout(self, table: str) -> SideLayout | None:
        """A side table's layout; None for one declared but read by no feature (nothing of it
        is kept); an undeclared name is refused."""
        if table not in self.side:
            declared = [t.name for t in self.features.side_tables]
            if table in declared:
                return None
            raise ValueError(
                f"side table {table!r}: not declared by use case {self.use_case} "
                f"(declared: {', '.join(declared) or 'none'})"
            )
        return self.side[table]

    def _side_rows(self, spec: SideLayout, rows: pd.DataFrame) -> SideRows:
        """A side table's frame as typed arrays. A row with a null key or time can never be
        joined, so it is left out (as the batch engine does); values must be finite or null."""
        what = f"side table {spec.name}"
        _require(rows, (*(c for c, _ in spec.keys), spec.time, *spec.columns), what)
        usable = rows[spec.time].notna().to_numpy()
        for column, _ in spec.keys:
            usable &= rows[column].notna().to_numpy()
        if not usable.all():
            rows = rows[usable]
        keys = []
        for column, kind in spec.keys:
            try:
                keys.append(_keys(rows[column], kind))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{what}: {column}: not {kind} keys ({exc})") from None
        published = times_ns(rows[spec.time], f"{what}: {spec.time}") + spec.known_after_ns
        values = []
        for column in spec.columns:
            try:
                value = pd.to_numeric(rows[column]).to_numpy(np.float64, na_value=np.nan)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{what}: {column}: not numeric ({exc})") from None
            if np.isinf(value).any():
                raise ValueError(f"{what}: {column}: must be finite or null")
            values.append(value)
        return SideRows(tuple(keys), published, tuple(values))

    @abstractmethod
    def _put_side(self, spec: SideLayout, rows: SideRows, prune_ns: int | None) -> None:
        """Upsert rows by (keys, publication time); then drop each written key's rows
        published at or before ``prune_ns`` (None: no watermark yet)."""

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

    def load(
        self,
        events: pd.DataFrame,
        as_of: pd.Timestamp | str,
        side_tables: Mapping[str, pd.DataFrame] | None = None,
    ) -> dict[str, int]:
        """Replace the state with what the online engine needs at ``as_of``.

        Keeps events in ``(as_of - horizon, as_of]``; a label is loaded only if it has
        matured (event at or before ``as_of - label delay``), or, known at a per-row time,
        only if that time is at or before ``as_of`` (with its time). The watermark becomes
        the newest event kept (none kept: the store is empty and has no watermark).
        ``side_tables`` (name -> rows) are the as-of joins' tables: rows published at or
        before ``as_of`` and within their table's horizon of it are kept; later rows come
        through ``put_side_rows``.
        """
        from ml_platform.features.batch import naive_utc

        fs = self.features
        _require(events, (*fs.input_columns, fs.label), "transactions")
        side = {
            name: self._side_rows(spec, frame)
            for name, frame in (side_tables or {}).items()
            if (spec := self._side_layout(name)) is not None
        }
        as_of_ns = to_ns(as_of)
        t = naive_utc(events[fs.event_time]).to_numpy("datetime64[ns]").view(np.int64)
        keep = (t > as_of_ns - self.horizon_ns) & (t <= as_of_ns)
        matured = t <= as_of_ns - self.label_delay_days * DAY_NS
        known = None
        if self.layout.known:
            label, known = self._per_row_labels(events, as_of_ns)
            loaded = known != UNKNOWN_NS
            if self._fixed_delay_labels:
                loaded |= matured
            label = label * loaded
            known = known[keep]
        else:
            label = events[fs.label].to_numpy().astype(self.layout.label_dtype) * matured
        rows = LoadRows(
            time_ns=t[keep],
            ids=events[fs.event_id].to_numpy(self.layout.id_dtype)[keep],
            keys=tuple(_keys(events[c], kind)[keep] for c, kind in fs.entities),
            values=tuple(events[c].to_numpy(np.float64)[keep] for c in fs.value_columns),
            labels=label[keep],
            known=known,
        )
        self.clear()
        self._bulk_insert(rows)
        if len(rows):
            self._set_watermark(int(rows.time_ns.max()))
        stats = {"rows": len(rows), "labels": int((rows.labels != 0).sum())}
        if known is not None:
            stats["labels"] = int((known != UNKNOWN_NS).sum())
        for name, kept in side.items():
            spec = self.side[name]
            oldest = as_of_ns - spec.horizon_ns + spec.known_after_ns
            kept = kept.take((kept.published_ns > oldest) & (kept.published_ns <= as_of_ns))
            if len(kept):
                self._put_side(spec, kept, None)
            stats[f"side_{name}"] = len(kept)
        return {**stats, **self.entity_counts()}


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}")


def _keys(column: pd.Series, kind: str) -> np.ndarray:
    """An entity-key column as int64 or Python strings (its declared type)."""
    return column.to_numpy(np.int64) if kind == "int" else column.astype(str).to_numpy(object)


def times_ns(column: pd.Series, what: str, missing: int | None = None) -> np.ndarray:
    """A column of timestamps (aware -> UTC) as naive-UTC int64 ns; a null is ``missing``,
    or refused naming ``what`` when ``missing`` is None."""
    from ml_platform.features.batch import naive_utc

    if not pd.api.types.is_datetime64_any_dtype(column):
        try:
            column = pd.to_datetime(column, format="ISO8601")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: not timestamps ({exc})") from None
    null = column.isna().to_numpy()
    if null.any() and missing is None:
        raise ValueError(f"{what}: contains nulls")
    ns = naive_utc(column).to_numpy("datetime64[ns]").view(np.int64)
    return np.where(null, missing, ns) if null.any() else ns


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
