"""Online feature engine: one event at a time, from the entity state in the store.

Same definitions and semantics as the batch engine (``definitions.py``), read from the
use case's ``FeatureSet`` (event id, time, entity keys, value columns, windows): one store
round trip fetches every entity's recent state (and, with as-of joins, each joined side
table's newest row), numpy over those few dozen entries computes every feature, then
``record`` appends the event to the state.
The aggregates fraud reads run in one tight loop; the others (hour, weekday, min, max,
windows of a label known at a per-row time, as-of joins) run in a second one, which is
empty for a use case that has none of them, so they cost it nothing.
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
    FeatureDef,
    FeatureSet,
    check_label_delay,
    feature_set,
)
from ml_platform.features.stores.base import EventRecord, OnlineStore, to_ns

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

_HOUR_NS = 3600 * 10**9
#: aggregates the second loop computes (besides every window of a per-row label time)
_APART = ("hour", "weekday", "min", "max", "asof")
#: what a window of a label known at a per-row time can aggregate
_KNOWN_AGGREGATES = (
    "count",
    "risk",
    "fraud_count",
    "mean_amount",
    "amount_ratio",
    "min",
    "max",
    "days_since_fraud",
    "days_since_first_fraud",
    "fraud_mean_amount",
    "seconds_since_prev",
)


def join_kinds(fs: FeatureSet) -> tuple[tuple[str, str], ...]:
    """Each join column that is not an entity with its key type ("int"/"string"): the
    type of the side-table key it is joined to, so the lookup compares like with like."""
    kinds: dict[str, str] = {}
    for f in fs.features:
        for column, key in f.join or ():
            kind = dict(fs.side_table(f.table).keys)[key]
            if kinds.setdefault(column, kind) != kind:
                raise ValueError(
                    f"feature {f.name!r}: join column {column!r} is joined to {kind} and to "
                    f"{kinds[column]} keys"
                )
    return tuple((c, kinds[c]) for c in fs.join_columns)


class RequestParser:
    """A request (dict or object with the request fields, no label) as an ``EventRecord``,
    checked field by field: the id and integer keys are integers, string keys strings,
    values finite (and >= 0 where the use case's rules say so); as-of join columns that are
    not entities are typed by the side-table key they join."""

    def __init__(self, use_case: UseCase) -> None:
        fs = feature_set(use_case)
        nonneg = {r.column for r in use_case.spec.event_schema.rules if r.check == "non_negative"}
        self.event_time = fs.event_time
        self.event_id = (fs.event_id, fs.event_id_type)
        self.entities = fs.entities
        self.values = tuple((c, c in nonneg) for c in fs.value_columns)
        self.joins = join_kinds(fs)

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
        if self.joins:
            joins = tuple(_key(name, kind, field(name)) for name, kind in self.joins)
            return EventRecord(event_id, time_ns, keys, tuple(values), joins)
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
        #: the second loop: (feature index, kind, entity, edge slots, window, value index)
        self._apart: list[tuple] = []
        known_reach = [0] * len(entities)
        for j, f in enumerate(fs.features):
            v = value_index.get(f.value, 0)
            if f.aggregate in _APART or f.known_at is not None:
                self._plan_apart(j, f, v, slot, known_reach)
                continue
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
        self._reach = [
            max(int(o.max()) if len(o) else 0, k)
            for o, k in zip(self._offsets, known_reach, strict=True)
        ]
        self._lookups, self._asof = self._plan_asof()

    def _plan_apart(self, j: int, f: FeatureDef, v: int, slot, known_reach: list[int]) -> None:
        """Plan one feature of the second loop (see the module docstring)."""
        fs = self.features
        if f.entity is None:  # hour, weekday; as-of joins are planned by _plan_asof
            if f.aggregate != "asof":
                self._apart.append((j, f.aggregate, None, 0, 0, 0, v))
            return
        e = fs.entity_columns.index(f.entity)
        source = "label" if f.label is not None and f.value is None else "value"
        if f.known_at is not None:
            if f.aggregate not in _KNOWN_AGGREGATES:
                raise ValueError(
                    f"feature {f.name!r}: {f.aggregate} is not served over a label known at a "
                    f"per-row time ({f.known_at}); served: {', '.join(_KNOWN_AGGREGATES)}"
                )
            if f.aggregate == "seconds_since_prev":  # reads no label: the previous event
                self._plan.append(
                    (j, "now_" + f.aggregate, e, slot(e, f.window_ns), -1, f.window_ns / 1e9, v)
                )
                return
            # its events are known in (t - w, t], so they happened in (t - w - within, t]
            reach = f.window_ns + fs.known_within_ns
            known_reach[e] = max(known_reach[e], reach)
            cap = reach / DAY_NS  # days_since_* with no known positive
            self._apart.append((j, "known_" + f.aggregate, e, 0, 0, f.window_ns, v, source, cap))
        elif f.delayed:
            d_ns = self.d * DAY_NS
            lo, hi = slot(e, d_ns + f.window_ns), slot(e, d_ns)
            self._apart.append((j, "delayed_" + f.aggregate, e, lo, hi, 0, v, source))
        else:
            self._apart.append((j, "now_" + f.aggregate, e, slot(e, f.window_ns), 0, 0, v, source))

    def _plan_asof(self) -> tuple[list[tuple], list[tuple]]:
        """The side-table rows a request reads (table and where each key value comes from:
        an entity key or a join field of the request) and, per as-of feature, its row,
        column, max age and default."""
        fs = self.features
        lookups: list[tuple] = []
        asof = []
        for j, f in enumerate(fs.features):
            if f.aggregate != "asof":
                continue
            table = fs.side_table(f.table)
            joined = {key: column for column, key in f.join}
            sources = []
            for key, kind in table.keys:
                column = joined[key]
                if column in fs.entity_columns:
                    entity_kind = dict(fs.entities)[column]
                    if entity_kind != kind:
                        raise ValueError(
                            f"feature {f.name!r}: join {column} ({entity_kind}) -> "
                            f"{table.name}.{key} ({kind}): key types differ"
                        )
                    sources.append((0, fs.entity_columns.index(column)))
                else:
                    sources.append((1, fs.join_columns.index(column)))
            lookup = (table.name, tuple(sources))
            if lookup not in lookups:
                lookups.append(lookup)
            column = self.store.side[table.name].columns.index(f.value)
            asof.append((j, lookups.index(lookup), column, f.window_ns, f.default))
        return lookups, asof

    def _record(self, event: Mapping[str, Any] | Any) -> EventRecord:
        return event if isinstance(event, EventRecord) else self.parse(event)

    def compute(self, tx: Mapping[str, Any] | Any) -> np.ndarray:
        """Features of ``tx`` from state strictly before it in event order (not recorded)."""
        r = self._record(tx)
        t, own = r.time_ns, r.values
        if self._lookups:
            if len(r.joins) != len(self.features.join_columns):
                joins = ", ".join(self.features.join_columns)
                raise ValueError(f"event {r.event_id!r}: needs the join fields {joins}")
            side = [
                (table, tuple((r.joins if src else r.keys)[i] for src, i in sources))
                for table, sources in self._lookups
            ]
            states, rows = self.store.fetch_request(
                r.keys, [t - reach for reach in self._reach], t, side
            )
        else:
            states = self.store.fetch_states(r.keys, [t - reach for reach in self._reach], t)
            rows = ()
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

        out = np.empty(len(self.columns), dtype=np.float64)
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
        if self._apart:
            self._compute_apart(out, r, states, ctx)
        for j, look, c, max_age, default in self._asof:
            row = rows[look]
            if row is None or t - row[0] >= max_age or math.isnan(row[1][c]):
                out[j] = default
            else:
                out[j] = row[1][c]
        return out

    def _compute_apart(self, out: np.ndarray, r: EventRecord, states, ctx) -> None:
        """The second loop: calendar fields, extrema, windows of per-row label times."""
        t, own = r.time_ns, r.values
        known_masks: dict[tuple[int, int], np.ndarray] = {}
        for j, agg, e, a, b, w, v, *src in self._apart:
            if agg == "hour":
                out[j] = (t % DAY_NS) // _HOUR_NS
                continue
            if agg == "weekday":
                out[j] = (t // DAY_NS + 3) % 7  # 1970-01-01 was a Thursday (0 = Monday)
                continue
            s = states[e]
            pos, e0 = ctx[e][1], ctx[e][2]
            column = s.labels if src[0] == "label" else s.values[v]
            if agg.startswith("known_"):
                mask = known_masks.get((e, w))
                if mask is None:
                    mask = (s.known > t - w) & (s.known <= t)
                    # at time t only the events before this one in event order (ids)
                    mask[e0:] &= s.ids[e0:] < r.event_id
                    known_masks[e, w] = mask
                picked = column[mask]
                n = len(picked)
                agg = agg[6:]
                if agg == "count":
                    out[j] = n
                elif agg in ("risk", "mean_amount", "amount_ratio"):
                    mean = float(picked.sum()) / n if n else 0.0
                    if agg == "amount_ratio":
                        out[j] = own[v] / mean if mean != 0 else 1.0
                    else:
                        out[j] = mean
                elif agg == "fraud_count":
                    out[j] = float(picked.sum())
                elif agg in ("min", "max"):
                    out[j] = (picked.min() if agg == "min" else picked.max()) if n else 0.0
                else:  # of the known positives: their event times or their values
                    hit = s.labels[mask] != 0
                    if agg == "fraud_mean_amount":
                        k = int(hit.sum())
                        out[j] = float(picked[hit].sum()) / k if k else 0.0
                    elif not hit.any():
                        out[j] = src[1]
                    else:
                        when = s.times[mask][hit]
                        edge = when.max() if agg == "days_since_fraud" else when.min()
                        out[j] = (t - int(edge)) / DAY_NS
            elif agg.startswith("delayed_"):  # (t - d - w, t - d]
                picked = column[pos[a] : pos[b]]
                if not len(picked):
                    out[j] = 0.0
                else:
                    out[j] = picked.min() if agg == "delayed_min" else picked.max()
            else:  # (t - w, t] up to this event, itself included
                start = pos[a]
                tie = s.ids[e0:] < r.event_id
                picked = np.concatenate((column[start:e0], column[e0:][tie], (own[v],)))
                out[j] = picked.min() if agg == "now_min" else picked.max()

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
