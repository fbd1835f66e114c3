"""Online feature engine: one event at a time, from the entity state in the store.

Same definitions and semantics as the batch engine (``definitions.py``), read from the
use case's ``FeatureSet`` (event id, time, entity keys, value columns, windows): one store
round trip fetches every entity's recent state, numpy over those few dozen entries computes
every feature, then ``record`` appends the event to the state.
Used by the serving path, so it imports neither Dagster nor pandas-heavy code paths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.features.definitions import (
    DAY_NS,
    DEFAULT_USE_CASE,
    NIGHT_LAST_HOUR,
    FeatureSet,
    check_label_delay,
    feature_set,
)
from ml_platform.features.stores.base import EventRecord, OnlineStore, to_ns

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

_HOUR_NS = 3600 * 10**9


class RequestParser:
    """A request (dict or object with the request fields, no label) as an ``EventRecord``,
    checked field by field: the id and integer keys are integers, string keys strings,
    values finite (and >= 0 where the use case's rules say so)."""

    def __init__(self, use_case: UseCase) -> None:
        fs = feature_set(use_case)
        nonneg = {r.column for r in use_case.spec.event_schema.rules if r.check == "non_negative"}
        self.event_time = fs.event_time
        self.event_id = (fs.event_id, fs.event_id_type)
        self.entities = fs.entities
        self.values = tuple((c, c in nonneg) for c in fs.value_columns)

    def __call__(self, event: Mapping[str, Any] | Any) -> EventRecord:
        get = event.get if isinstance(event, Mapping) else lambda name: getattr(event, name, None)

        def field(name: str) -> Any:
            value = get(name)
            if value is None:
                raise ValueError(f"{name}: missing")
            return value

        try:
            time_ns = to_ns(field(self.event_time))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.event_time}: not a timestamp ({exc})") from None
        event_id = _key(*self.event_id, field(self.event_id[0]))
        keys = tuple(_key(name, kind, field(name)) for name, kind in self.entities)
        values = []
        for name, nonneg in self.values:
            value = float(field(name))
            if not math.isfinite(value) or (nonneg and value < 0):
                rule = "finite and >= 0" if nonneg else "finite"
                raise ValueError(f"{name}: must be {rule}, got {value!r}")
            values.append(value)
        return EventRecord(event_id, time_ns, keys, tuple(values))


def _key(name: str, kind: str, value: Any) -> int | str:
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"{name}: must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    return int(value)


def resolve_use_case(use_case: UseCase | str) -> UseCase:
    """A loaded use case, or one by name (the default from its folder alone)."""
    if not isinstance(use_case, str):
        return use_case
    from ml_platform.data.validation import default_use_case
    from ml_platform.use_cases.loader import get_use_case

    return default_use_case() if use_case == DEFAULT_USE_CASE else get_use_case(use_case)


@cache
def _named_parser(name: str) -> RequestParser:
    return RequestParser(resolve_use_case(name))


def parse_tx(
    tx: Mapping[str, Any] | Any, use_case: UseCase | str = DEFAULT_USE_CASE
) -> EventRecord:
    """A request of a use case (default: the platform's default one) as an ``EventRecord``."""
    parser = _named_parser(use_case) if isinstance(use_case, str) else RequestParser(use_case)
    return parser(tx)


#: the label-neutral name
parse_event = parse_tx


class OnlineFeatureEngine:
    """``compute(event) -> np.ndarray`` in the feature-set order; ``record(event)`` updates
    state. The use case is the store's (``use_case`` may name it again: it must match)."""

    def __init__(
        self,
        store: OnlineStore,
        label_delay_days: int = 7,
        use_case: UseCase | str | None = None,
    ) -> None:
        self.d = check_label_delay(label_delay_days)
        if store.label_delay_days != self.d:
            raise ValueError(f"label_delay_days: engine {self.d} != store {store.label_delay_days}")
        declared = store.declaration if use_case is None else use_case
        fs: FeatureSet = feature_set(declared)
        if fs.use_case != store.use_case:
            raise ValueError(f"use_case: engine {fs.use_case!r} != store {store.use_case!r}")
        self.store = store
        self.features = fs
        self.columns: list[str] = fs.columns
        self.parse = (
            _named_parser(declared) if isinstance(declared, str) else RequestParser(declared)
        )
        entities = fs.entity_columns
        value_index = {c: i for i, c in enumerate(fs.value_columns)}
        # Per entity, every window edge as an offset back from t: one searchsorted finds all.
        offsets: list[list[int]] = [[] for _ in entities]

        def slot(entity: int, offset_ns: int) -> int:
            if offset_ns not in offsets[entity]:
                offsets[entity].append(offset_ns)
            return offsets[entity].index(offset_ns)

        self._plan = []
        for j, f in enumerate(fs.features):
            v = value_index.get(f.value, 0)
            if f.entity is None:
                self._plan.append((j, f.aggregate, None, 0, 0, 0.0, v))
                continue
            e = entities.index(f.entity)
            if f.delayed:
                d_ns = self.d * DAY_NS
                lo, hi = slot(e, d_ns + f.window_ns), slot(e, d_ns)
                cap = (d_ns + f.window_ns) / DAY_NS  # days_since_fraud with no positive
                self._plan.append((j, f.aggregate, e, lo, hi, cap, v))
            else:
                cap = f.window_ns / 1e9
                self._plan.append((j, "now_" + f.aggregate, e, slot(e, f.window_ns), -1, cap, v))
        self._offsets = [np.array(o, dtype=np.int64) for o in offsets]
        # how far back each entity's features look: fetch no more than that
        self._reach = [int(o.max()) if len(o) else 0 for o in self._offsets]

    def _record(self, event: Mapping[str, Any] | Any) -> EventRecord:
        return event if isinstance(event, EventRecord) else self.parse(event)

    def compute(self, tx: Mapping[str, Any] | Any) -> np.ndarray:
        """Features of ``tx`` from state strictly before it in event order (not recorded)."""
        r = self._record(tx)
        t, own = r.time_ns, r.values
        states = self.store.fetch_states(r.keys, [t - reach for reach in self._reach], t)
        ctx = []
        for offsets, s in zip(self._offsets, states, strict=True):
            times = s.times  # sorted ascending, all <= t
            pos = np.searchsorted(times, t - offsets, side="right").tolist()
            e0 = int(np.searchsorted(times, t, side="left"))  # first entry at time t
            # entries at exactly t are before this one only if their id is smaller
            tie = s.ids[e0:] < r.event_id
            tie_n = int(tie.sum())
            tie_sums = [float(v[e0:][tie].sum()) if tie_n else 0.0 for v in s.values]
            cs_v = [np.concatenate(([0.0], np.cumsum(v))).tolist() for v in s.values]
            cs_l = np.concatenate(([0], np.cumsum(s.labels))).tolist()
            ctx.append((times, pos, e0, tie_n, tie_sums, cs_v, cs_l, s.labels, s.values))

        out = np.empty(len(self._plan), dtype=np.float64)
        for j, agg, entity, a, b, cap, v in self._plan:
            if agg == "value":
                out[j] = own[v]
            elif agg == "weekend":
                out[j] = float((t // DAY_NS + 3) % 7 >= 5)  # 1970-01-01 was a Thursday
            elif agg == "night":
                out[j] = float((t % DAY_NS) // _HOUR_NS <= NIGHT_LAST_HOUR)
            else:
                times, pos, e0, tie_n, tie_sums, cs_v, cs_l, labels, values = ctx[entity]
                if b >= 0:  # delayed window (t - d - w, t - d]
                    lo, hi = pos[a], pos[b]
                    n = hi - lo
                    if agg == "count":
                        out[j] = n
                    elif agg == "risk":
                        out[j] = (cs_l[hi] - cs_l[lo]) / n if n else 0.0
                    elif agg == "amount_ratio":
                        mean = (cs_v[v][hi] - cs_v[v][lo]) / n if n else 0.0
                        out[j] = own[v] / mean if mean != 0 else 1.0
                    elif agg == "fraud_count":
                        out[j] = cs_l[hi] - cs_l[lo]
                    elif agg == "days_since_fraud":
                        hits = np.flatnonzero(labels[lo:hi])
                        out[j] = (t - int(times[lo + hits[-1]])) / DAY_NS if len(hits) else cap
                    elif agg == "days_since_first_fraud":
                        hits = np.flatnonzero(labels[lo:hi])
                        out[j] = (t - int(times[lo + hits[0]])) / DAY_NS if len(hits) else cap
                    elif agg == "fraud_share_since_first":
                        hits = np.flatnonzero(labels[lo:hi])
                        out[j] = len(hits) / (n - hits[0]) if len(hits) else 0.0
                    elif agg == "fraud_mean_amount":
                        hit = labels[lo:hi] != 0
                        k = int(hit.sum())
                        out[j] = float(values[v][lo:hi][hit].sum()) / k if k else 0.0
                    else:
                        out[j] = (cs_v[v][hi] - cs_v[v][lo]) / n if n else 0.0
                    continue
                start = pos[a]  # window (t - w, t] up to this event, itself included
                n = e0 - start + tie_n + 1
                if agg == "now_count":
                    out[j] = n
                elif agg == "now_seconds_since_prev":
                    if tie_n:
                        out[j] = 0.0
                    elif e0 > start:
                        out[j] = (t - int(times[e0 - 1])) / 1e9
                    else:
                        out[j] = cap
                else:
                    mean = (cs_v[v][e0] - cs_v[v][start] + tie_sums[v] + own[v]) / n
                    if agg == "now_mean_amount":
                        out[j] = mean
                    elif agg == "now_amount_ratio":
                        out[j] = own[v] / mean if mean != 0 else 1.0
                    else:  # pragma: no cover - guarded by definitions._check
                        name = self.features.features[j].name
                        raise ValueError(f"feature {name!r}: unsupported {agg!r}")
        return out

    def record(self, tx: Mapping[str, Any] | Any) -> None:
        """Append ``tx`` to each of its entities' state (idempotent)."""
        self.store.append(self._record(tx))

    def compute_and_record(self, tx: Mapping[str, Any] | Any) -> np.ndarray:
        r = self._record(tx)
        values = self.compute(r)
        self.store.append(r)
        return values

    def record_labels(self, labeled: pd.DataFrame) -> int:
        """Store matured labels (the use case's columns incl. its label); returns how many."""
        return self.store.set_labels(labeled)
