"""Batch feature engine: every window of every event at once, with numpy.

Every column it reads (event id, event time, entity keys, value columns, label) comes from
the use case's ``FeatureSet``; integer entity keys are used as they are, any other keys
(strings) as integer codes. Per entity the rows are sorted by ``(entity, event time, event
id)`` (event order).
Each window edge becomes one ``searchsorted`` on a composite integer key
``entity_code * (U + 1) + time_rank`` (``time_rank`` = rank of the timestamp among the U
distinct timestamps, so nanosecond timestamps stay exact and the key never overflows);
counts, sums and label counts are then differences of prefix sums. Value prefix sums are
*segmented* (they restart at every entity, 80-bit extended precision): a row's window mean
depends on its own entity's earlier values only, so it is bit-identical whether or not other
entities or later rows exist (the point-in-time property, exactly), and stays exact to
~1e-12 however large the values elsewhere.
Window-edge queries are issued in sorted order (cache-friendly binary searches); entities
are processed one after the other and the output is one preallocated float64 block, so peak
memory is the output plus one entity's few arrays of n. O(n log n), no per-group loop.
``rows`` restricts the *output* to some rows (batch scoring wants a month, not its
look-back): every row is still history, but windows are searched and aggregated only for
the rows asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_platform.features.definitions import (
    DAY_NS,
    DEFAULT_USE_CASE,
    NIGHT_LAST_HOUR,
    SECOND_NS,
    FeatureSet,
    check_label_delay,
    feature_set,
)

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

_HOUR_NS = 3600 * 10**9
_CHUNK_CELLS = 1 << 20  # padded cells per cumsum block: bounds the temporary memory
_CHUNK_ROWS = 1 << 18  # rows per extended-precision window-sum block


def _check_input(tx: pd.DataFrame, fs: FeatureSet) -> None:
    missing = [c for c in fs.input_columns if c not in tx.columns]
    if missing:
        raise ValueError(f"{fs.use_case} events: missing column(s) {missing}")
    time_col = fs.event_time
    if not pd.api.types.is_datetime64_any_dtype(tx[time_col]):
        raise ValueError(f"{time_col}: must be a datetime column, got {tx[time_col].dtype}")
    for col in fs.input_columns:
        if tx[col].isna().any():
            raise ValueError(f"{col}: contains nulls")
    if tx[fs.event_id].duplicated().any():
        raise ValueError(f"{fs.event_id}: not unique")


def _keys(column: pd.Series, *, ordered: bool = False) -> np.ndarray:
    """int64 keys of a column: integers as they are (the fast path), anything else (strings)
    as codes of its distinct values, in sorted order if ``ordered`` (event-id tie-breaks)."""
    if pd.api.types.is_integer_dtype(column) or pd.api.types.is_bool_dtype(column):
        return column.to_numpy(np.int64)
    codes, _ = pd.factorize(column, sort=ordered)
    return codes.astype(np.int64, copy=False)


def naive_utc(times: pd.Series) -> pd.Series:
    """Timezone-aware timestamps become naive UTC (the online engine does the same)."""
    if getattr(times.dt, "tz", None) is not None:
        return times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times


def _index_dtype(n: int) -> type:
    """Positions fit in int32 below 2**31 rows: half the memory of int64 index arrays."""
    return np.int32 if n < 2**31 - 1 else np.int64


class _Events:
    """All rows in event order ``(event time, event id)`` with dense time ranks."""

    def __init__(self, t: np.ndarray, ids: np.ndarray, wanted: np.ndarray):
        n = len(t)
        self.n = n
        self.idx = _index_dtype(n)
        self.order = np.lexsort((ids, t)).astype(self.idx)
        sorted_t = t[self.order]
        new = np.ones(n, dtype=bool)
        new[1:] = sorted_t[1:] != sorted_t[:-1]
        self.utimes = sorted_t[new]
        self.rank = np.empty(n, dtype=self.idx)  # rank of each row's timestamp, input order
        self.rank[self.order] = np.cumsum(new) - 1
        del new
        keep = wanted[self.order]
        self.wanted_order = self.order[keep]  # the rows asked for, event order
        self.wanted_t = sorted_t if keep.all() else sorted_t[keep]

    def rank_after(self, offset_ns: int) -> np.ndarray:
        """Per row (input order; filled for the wanted rows): rank of the first distinct
        time > t - offset. Not cached: each window edge is searched once per entity.

        The queries ``t - offset`` are sorted in event order, so the search is cache-friendly.
        """
        r = np.zeros(self.n, dtype=self.idx)
        r[self.wanted_order] = np.searchsorted(self.utimes, self.wanted_t - offset_ns, "right")
        return r


class _EntityIndex:
    """Rows of one entity in event order, with searchsorted window edges.

    Positions are in the entity-sorted order; ``out`` are the positions of the wanted rows
    (increasing), and every per-row array handed to the aggregates is aligned with ``out``.
    """

    def __init__(self, entity: np.ndarray, ev: _Events, wanted: np.ndarray):
        # stable sort of the event order by entity = order by (entity, time, id)
        idx = ev.idx
        self.order = ev.order[np.argsort(entity[ev.order], kind="stable")]
        ent = entity[self.order]
        n = len(ent)
        code = np.zeros(n, dtype=idx)
        if n:
            np.cumsum(ent[1:] != ent[:-1], out=code[1:])
        del ent
        self.seg_start = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if n else code
        self.seg_len = np.diff(np.r_[self.seg_start, n])
        self.ev = ev
        self.stride = len(ev.utimes) + 1
        self.keys = code.astype(np.int64) * self.stride  # (entity, time rank): increasing
        self.keys += ev.rank[self.order]
        self.n = n
        self.out = np.flatnonzero(wanted[self.order]).astype(idx)
        self.rows = self.order[self.out]  # input row of each wanted position
        self.out_code = code[self.out]  # entity number of each wanted row
        self.first = self.seg_start[self.out_code].astype(idx)  # the entity's first position

    def first_after(self, offset_ns: int) -> np.ndarray:
        """Sorted position of the entity's first row with time > t - offset (per row)."""
        q = self.out_code.astype(np.int64) * self.stride
        q += self.ev.rank_after(offset_ns)[self.rows]  # increasing queries
        return np.searchsorted(self.keys, q, side="left").astype(self.ev.idx)

    def prefix(self, values: np.ndarray, dtype) -> np.ndarray:
        """Prefix sums over all entities with a leading 0, in sorted order (exact integers)."""
        out = np.zeros(self.n + 1, dtype=dtype)
        np.cumsum(values[self.order].astype(dtype, copy=False), out=out[1:])
        return out

    def segmented_prefix(self, values: np.ndarray, dtype) -> np.ndarray:
        """Running sums that restart at every entity, with a leading 0 per entity.

        Entity ``k`` owns the slots ``seg_start[k] + k .. seg_start[k] + k + len[k]``: slot
        ``p + code[p]`` holds the sum of the entity's rows before sorted position ``p``, so a
        window ``[start, end)`` of a row is ``P[end + code] - P[start + code]``.
        Entities are bucketed by length (powers of two), and each bucket is one padded 2-D
        ``cumsum`` along its rows, in chunks of ~1M cells to bound memory: O(n) work. The
        additions are sequential per entity, so a row's sums do not depend on any other
        entity or any later row.
        """
        v = values[self.order].astype(dtype, copy=False)
        n_seg = len(self.seg_start)
        out = np.zeros(self.n + n_seg, dtype=dtype)
        if not self.n:
            return out
        bucket = np.ceil(np.log2(self.seg_len)).astype(np.int64)
        for b in np.unique(bucket):
            segs_b = np.flatnonzero(bucket == b)
            width = np.arange(int(self.seg_len[segs_b].max()))
            step = max(1, _CHUNK_CELLS // len(width))
            for i in range(0, len(segs_b), step):
                segs = segs_b[i : i + step]
                idx = self.seg_start[segs][:, None] + width
                inside = width < self.seg_len[segs][:, None]
                block = np.where(inside, v[np.minimum(idx, self.n - 1)], 0)
                np.cumsum(block, axis=1, out=block)
                # position p of entity k goes to slot p + k + 1 (slot p + k stays the 0 before)
                out[(idx + segs[:, None] + 1)[inside]] = block[inside]
        return out

    def window_sum(
        self,
        prefix: np.ndarray,
        start: np.ndarray,
        end: np.ndarray,
        divide_by: np.ndarray | None = None,
    ) -> np.ndarray:
        """float64 sum over sorted positions [start, end) of the row's entity (see
        segmented_prefix), divided by ``max(divide_by, 1)`` in the prefix's precision if
        given. In chunks of rows: the extended-precision temporaries stay small."""
        out = np.empty(len(start), dtype=np.float64)
        for lo in range(0, len(start), _CHUNK_ROWS):
            sl = slice(lo, lo + _CHUNK_ROWS)
            code = self.out_code[sl]
            total = prefix[end[sl] + code]
            total -= prefix[start[sl] + code]
            if divide_by is not None:
                total /= np.maximum(divide_by[sl], 1)
            out[sl] = total
        return out


class _Frauds:
    """One entity's known-fraud prefix counts and, computed once if needed, for every sorted
    position the newest fraud before it and the oldest fraud at or after it."""

    def __init__(self, ix: _EntityIndex, fraud: np.ndarray):
        self.cs = ix.prefix(fraud, ix.ev.idx)  # counts: int32 below 2**31 rows
        self.n = ix.n
        self._last: np.ndarray | None = None
        self._next: np.ndarray | None = None

    def _positions(self, none: int) -> np.ndarray:
        """Each sorted position's own index where it holds a fraud, else ``none``."""
        is_fraud = self.cs[1:] != self.cs[:-1]
        return np.where(is_fraud, np.arange(self.n, dtype=self.cs.dtype), none)

    def newest_before(self) -> np.ndarray:
        """``[p]`` = position of the newest fraud at a position <= p (-1 if none)."""
        if self._last is None:
            self._last = np.maximum.accumulate(self._positions(-1))
        return self._last

    def oldest_from(self) -> np.ndarray:
        """``[p]`` = position of the oldest fraud at a position >= p (n if none); n+1 slots."""
        if self._next is None:
            suffix_min = np.minimum.accumulate(self._positions(self.n)[::-1])[::-1]
            self._next = np.append(suffix_min, self.n)
        return self._next


@contextmanager
def _small_pages() -> Iterator[None]:
    """No transparent-huge-page advice for the engine's short-lived arrays.

    numpy madvises huge pages for big arrays; where the kernel's THP defrag is ``madvise``
    every first touch may then compact memory synchronously. At full scale that cost ~1-1.5 s
    of kernel time per build here, against ~0.5 s with plain pages. A performance hint only
    (values are unchanged); the previous setting is restored.
    """
    setter = getattr(np._core.multiarray, "_set_madvise_hugepage", None)
    if setter is None:  # pragma: no cover - other numpy builds
        yield
        return
    previous = setter(False)
    try:
        yield
    finally:
        setter(previous)


def build_features(
    transactions: pd.DataFrame,
    label_delay_days: int = 7,
    *,
    rows: np.ndarray | None = None,
    use_case: UseCase | str = DEFAULT_USE_CASE,
) -> pd.DataFrame:
    """Point-in-time features: the event id + the use case's feature columns.

    Every event is history; the output has one row per event, or only the rows where the
    boolean mask ``rows`` is true, in the input order. Every feature is float64 (as the
    online engine returns them). The label is read only through delayed windows.
    """
    with _small_pages():
        return _build_features(transactions, label_delay_days, rows, feature_set(use_case))


def build_features_for_days(
    transactions: pd.DataFrame,
    days: Iterable[date | str],
    label_delay_days: int = 7,
    *,
    use_case: UseCase | str = DEFAULT_USE_CASE,
) -> pd.DataFrame:
    """Features of the events that fall on ``days`` (every row is still history), with their
    keys: event id, event time, entity keys + the feature columns, in the input order. What
    a batch run over some days writes and scores."""
    from ml_platform.data.lake import on_days

    fs = feature_set(use_case)
    own = on_days(transactions, days, column=fs.event_time)
    out = build_features(transactions, label_delay_days, rows=own, use_case=use_case)
    for i, col in enumerate((fs.event_time, *fs.entity_columns), start=1):
        out.insert(i, col, transactions[col].to_numpy()[own])
    return out


def _label_values(tx: pd.DataFrame, fs: FeatureSet) -> np.ndarray | None:
    """The label as the aggregates read it: 0/1 for a binary task, finite floats otherwise."""
    if not fs.reads_label:
        return None
    label = tx[fs.label].to_numpy()
    if fs.label_task == "binary":
        if ((label != 0) & (label != 1)).any():
            raise ValueError(f"{fs.label}: must be 0 or 1")
        return label
    label = label.astype(np.float64)
    if not np.isfinite(label).all():
        raise ValueError(f"{fs.label}: must be finite")
    return label


def _build_features(
    transactions: pd.DataFrame, label_delay_days: int, rows: np.ndarray | None, fs: FeatureSet
) -> pd.DataFrame:
    d = check_label_delay(label_delay_days)
    _check_input(transactions, fs)
    features = fs.features
    n = len(transactions)
    wanted = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if wanted.shape != (n,):
        raise ValueError(f"rows: expected a boolean mask of {n} rows, got shape {wanted.shape}")
    t = naive_utc(transactions[fs.event_time]).to_numpy(dtype="datetime64[ns]").view(np.int64)
    id_column = transactions[fs.event_id]
    ids = _keys(id_column, ordered=True)  # event order breaks ties by id
    value_of: dict[str, np.ndarray] = {}
    for col in fs.value_columns:
        value_of[col] = transactions[col].to_numpy(np.float64)
        if not np.isfinite(value_of[col]).all():
            raise ValueError(f"{col}: must be finite")
    label = _label_values(transactions, fs)

    # One float64 block, column-major, filled in place: no consolidation copy at the end.
    m = int(wanted.sum())
    dest = np.cumsum(wanted, dtype=_index_dtype(n)) - 1  # output row of each wanted input row
    values = np.empty((m, len(features)), dtype=np.float64, order="F")
    ev = _Events(t, ids, wanted)
    t_out = t[wanted]
    groups: dict[tuple, list[int]] = {}
    for j, f in enumerate(features):
        if f.aggregate == "value":
            values[:, j] = value_of[f.value][wanted]
        elif f.aggregate == "weekend":
            values[:, j] = (t_out // DAY_NS + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        elif f.aggregate == "night":
            values[:, j] = (t_out % DAY_NS) // _HOUR_NS <= NIGHT_LAST_HOUR
        else:
            groups.setdefault((f.entity, f.window_ns, f.delayed), []).append(j)
    del t_out

    def run_entity(entity: str) -> None:
        ix = _EntityIndex(_keys(transactions[entity]), ev, wanted)
        sums = _Sums(ix, value_of, label, fs.label_task)
        frauds = _Frauds(ix, label) if label is not None and fs.label_task == "binary" else None
        at = dest[ix.rows]
        delay_end = None  # shared by every delayed window of the entity
        for (e, w, delayed), cols in groups.items():
            if e != entity:
                continue
            if delayed:
                start = ix.first_after(d * DAY_NS + w)
                if delay_end is None:
                    delay_end = ix.first_after(d * DAY_NS)
                end = delay_end
            else:
                start = ix.first_after(w)
                end = ix.out + 1  # up to the row, event order
            count = end - start
            for j in cols:
                values[at, j] = _aggregate(
                    features[j], ix, start, end, count, sums, frauds, value_of, t, d
                )
            del start, end, count

    # One entity after the other keeps peak memory near one entity's working set.
    for entity in dict.fromkeys(key[0] for key in groups):
        run_entity(entity)
    out = pd.DataFrame(values, columns=fs.columns, copy=False)
    integer_ids = id_column.dtype.kind in "iub"
    out.insert(0, fs.event_id, (ids if integer_ids else id_column.to_numpy())[wanted])
    return out


class _Sums:
    """One entity's running sums, each computed on first use: value columns (80-bit: exact
    means), values of the known positives (few per entity: float64) and a numeric label."""

    def __init__(self, ix: _EntityIndex, value_of: dict, label: np.ndarray | None, task: str):
        self.ix, self.value_of, self.label, self.task = ix, value_of, label, task
        self._cache: dict[tuple[str, str | None], np.ndarray] = {}

    def get(self, kind: str, column: str | None = None) -> np.ndarray:
        key = (kind, column)
        if key not in self._cache:
            if kind == "value":
                out = self.ix.segmented_prefix(self.value_of[column], np.longdouble)
            elif kind == "positive_value":
                out = self.ix.segmented_prefix(
                    self.value_of[column] * (self.label != 0), np.float64
                )
            else:  # a numeric label's running sums
                out = self.ix.segmented_prefix(self.label, np.longdouble)
            self._cache[key] = out
        return self._cache[key]


def _aggregate(f, ix: _EntityIndex, start, end, count, sums: _Sums, frauds, value_of, t, d):
    """One feature's values for the wanted rows (aligned with ``ix.out``)."""
    m = len(ix.out)
    if f.aggregate == "count":
        return count
    if f.aggregate in ("risk", "fraud_count") and frauds is None:  # a numeric label
        if f.aggregate == "fraud_count":
            return ix.window_sum(sums.get("label"), start, end)
        mean = ix.window_sum(sums.get("label"), start, end, divide_by=count)
        mean[count == 0] = 0.0
        return mean
    cs_fraud = frauds.cs if frauds is not None else None
    empty_days = (d * DAY_NS + (f.window_ns or 0)) / DAY_NS  # days_since_* with no positive
    if f.aggregate == "fraud_count":
        return cs_fraud[end] - cs_fraud[start]
    if f.aggregate == "days_since_fraud":
        # newest positive at a sorted position < end
        idx = np.full(m, -1, dtype=np.int64)
        has_rows = end > 0
        idx[has_rows] = frauds.newest_before()[end[has_rows] - 1]
        hit = idx >= start  # start is inside the entity, so a hit is the same entity
        out = np.full(m, empty_days)
        out[hit] = (t[ix.rows[hit]] - t[ix.order[idx[hit]]]) / DAY_NS
        return out
    if f.aggregate in ("days_since_first_fraud", "fraud_share_since_first"):
        idx = frauds.oldest_from()[start]  # oldest positive at a sorted position >= start
        hit = idx < end  # before the window's end, so inside the window (same entity)
        if f.aggregate == "days_since_first_fraud":
            out = np.full(m, empty_days)
            out[hit] = (t[ix.rows[hit]] - t[ix.order[idx[hit]]]) / DAY_NS
            return out
        out = np.zeros(m)
        n_frauds = cs_fraud[end] - cs_fraud[start]
        out[hit] = n_frauds[hit] / (end[hit] - idx[hit])
        return out
    if f.aggregate == "fraud_mean_amount":
        n_frauds = cs_fraud[end] - cs_fraud[start]
        total = ix.window_sum(sums.get("positive_value", f.value), start, end)
        return np.divide(total, n_frauds, out=np.zeros(m), where=n_frauds > 0)
    if f.aggregate in ("mean_amount", "amount_ratio"):
        mean = ix.window_sum(sums.get("value", f.value), start, end, divide_by=count)
        mean[count == 0] = 0.0
        if f.aggregate == "mean_amount":
            return mean
        current = value_of[f.value][ix.rows]
        return np.divide(current, mean, out=np.ones(m), where=mean != 0)
    if f.aggregate == "risk":
        n_frauds = cs_fraud[end] - cs_fraud[start]
        return np.divide(n_frauds, count, out=np.zeros(m), where=count > 0)
    if f.aggregate == "seconds_since_prev":
        cap = f.window_ns / SECOND_NS
        gap = np.full(m, cap)
        same = ix.out > ix.first  # the entity has an earlier row
        prev = ix.order[ix.out[same] - 1]
        gap[same] = (t[ix.rows[same]] - t[prev]) / 1e9
        return np.minimum(gap, cap)  # a previous event w back or more is outside the window
    raise ValueError(f"feature {f.name!r}: unknown aggregate {f.aggregate!r}")
