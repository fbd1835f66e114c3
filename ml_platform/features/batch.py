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

The other kinds, on the same sorted orders:

- ``min`` / ``max`` of a value or the label: a window is a contiguous range ``[start, end)``
  of the entity order, so a range-extremum query on a sparse table built one level at a
  time (memory: one level of n; O(n log L) for windows of at most L rows); 0 when empty;
- per-row label times (``known_at``): a second order per entity, by ``(entity, label time,
  event id)`` over the rows whose label time is known (NaT never counts); the events whose
  label became known in ``(t - w, t]`` are a contiguous range of it, found by the same
  composite-key ``searchsorted`` with the label times' ranks and the wanted rows' event
  times as queries. Counts, sums, means and extrema read that range as above;
  ``days_since_*`` read the newest / oldest *event time* of its positives (a range max /
  min, since that order is not event order) and count ``w + known_within`` when it holds
  none; ``fraud_share_since_first`` has no such contiguous form and is refused;
- ``asof``: join keys factorised jointly with the side table's, one ``searchsorted`` on
  ``key_code * (U + 1) + rank(time + known_after)`` finds the newest row known at or before
  t; its value if younger than the max age (strictly) and not null, else the default. Rows
  with the same keys and time: the later row of the table wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_platform.features.definitions import (
    DAY_NS,
    DEFAULT_USE_CASE,
    EXTREMUM_AGGREGATES,
    NIGHT_LAST_HOUR,
    SECOND_NS,
    FeatureSet,
    check_label_delay,
    feature_set,
)

if TYPE_CHECKING:
    from distributed import Client

    from ml_platform.use_cases.loader import UseCase

_HOUR_NS = 3600 * 10**9
_CHUNK_CELLS = 1 << 20  # padded cells per cumsum block: bounds the temporary memory
_CHUNK_ROWS = 1 << 18  # rows per extended-precision window-sum block


def check_events(tx: pd.DataFrame, fs: FeatureSet) -> None:
    """Refuse events the engine would compute wrongly, naming the column and the reason."""
    missing = [c for c in fs.input_columns if c not in tx.columns]
    if missing:
        raise ValueError(f"{fs.use_case} events: missing column(s) {missing}")
    known = fs.known_at if fs.known_at in fs.input_columns else None
    for time_col in (fs.event_time, known):
        if time_col and not pd.api.types.is_datetime64_any_dtype(tx[time_col]):
            raise ValueError(f"{time_col}: must be a datetime column, got {tx[time_col].dtype}")
    for col in fs.input_columns:
        if col != known and tx[col].isna().any():  # an unknown label time (NaT) never counts
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


class _Sorted:
    """Rows in a sorted order cut into per-entity segments, and window sums over it.

    ``order`` is the input row at each sorted position, ``seg_start``/``seg_len`` the
    segments (one per entity present), ``rows`` the wanted input rows the queries are for and
    ``out_code`` each query's segment (any valid one when its window is empty).
    """

    ev: _Events
    order: np.ndarray
    n: int
    seg_start: np.ndarray
    seg_len: np.ndarray
    rows: np.ndarray
    out_code: np.ndarray

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
        out = np.zeros(max(self.n + n_seg, 1), dtype=dtype)  # one slot if no row: empty sums
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


class _EntityIndex(_Sorted):
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


class _KnownIndex(_Sorted):
    """The rows whose label time is known, sorted by (entity, label time, event id).

    A per-row-label window of a wanted row (its entity's events whose label became known in
    ``(t - w, t]``) is then the contiguous range ``[first_after(w), first_after(0))``; the
    queries are the same wanted rows as the entity index's, in the same (increasing) order.
    Rows whose label time is NaT are left out: they never count.
    """

    def __init__(self, ix: _EntityIndex, known: np.ndarray, valid: np.ndarray, t, ids):
        idx = ix.ev.idx
        self.ev = ix.ev
        row_code = np.empty(ix.n, dtype=idx)
        row_code[ix.order] = ix.keys // ix.stride  # the entity number of each row
        rows = np.flatnonzero(valid)
        sort = np.lexsort((ids[rows], known[rows], row_code[rows]))
        self.order = rows[sort].astype(idx)
        del rows, sort
        code = row_code[self.order]
        at = known[self.order]
        self.n = len(self.order)
        self.utimes = np.unique(at)
        self.stride = len(self.utimes) + 1
        self.keys = code.astype(np.int64) * self.stride
        self.keys += np.searchsorted(self.utimes, at)
        self.seg_start = np.flatnonzero(np.r_[True, code[1:] != code[:-1]]) if self.n else code
        self.seg_len = np.diff(np.r_[self.seg_start, self.n])
        seg_code = code[self.seg_start]
        self.rows = ix.rows
        self.query_code = ix.out_code
        last = max(len(seg_code) - 1, 0)
        self.out_code = np.minimum(np.searchsorted(seg_code, ix.out_code), last).astype(idx)
        self.query_t = t[ix.rows]

    def first_after(self, offset_ns: int) -> np.ndarray:
        """Known-order position of the entity's first row known after t - offset (per row)."""
        q = self.query_code.astype(np.int64) * self.stride
        q += np.searchsorted(self.utimes, self.query_t - offset_ns, "right")
        return np.searchsorted(self.keys, q, side="left").astype(self.ev.idx)


def _range_extreme(v: np.ndarray, start: np.ndarray, end: np.ndarray, ufunc) -> np.ndarray:
    """``ufunc.reduce(v[start:end])`` per query (``minimum`` or ``maximum``), 0 if empty.

    A sparse table built one level at a time: level k holds the extreme of every run of
    2**k positions, and a window of length L is the extreme of two overlapping runs of
    2**floor(log2 L). Queries are answered at their level, then the level is replaced by the
    next, so memory stays one level of n; O(n log L_max) work, no loop per row.
    """
    out = np.zeros(len(start), dtype=v.dtype)
    length = (end - start).astype(np.int64)
    todo = np.flatnonzero(length > 0)
    if not len(todo):
        return out
    level = np.frexp(length[todo])[1] - 1  # floor(log2 L), exact for integers
    by_level = np.argsort(level, kind="stable")
    todo, level = todo[by_level], level[by_level]
    bounds = np.searchsorted(level, np.arange(int(level[-1]) + 2))
    table = v.copy()
    for k in range(int(level[-1]) + 1):
        q = todo[bounds[k] : bounds[k + 1]]
        if len(q):
            out[q] = ufunc(table[start[q]], table[end[q] - (1 << k)])
        if k < level[-1]:
            half = 1 << k
            table = ufunc(table[:-half], table[half:])
    return out


class _Frauds:
    """One entity's known-fraud prefix counts and, computed once if needed, for every sorted
    position the newest fraud before it and the oldest fraud at or after it."""

    def __init__(self, ix: _Sorted, fraud: np.ndarray):
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
    use_case: UseCase | FeatureSet | str = DEFAULT_USE_CASE,
    side_tables: Mapping[str, pd.DataFrame] | None = None,
    client: Client | None = None,
) -> pd.DataFrame:
    """Point-in-time features: the event id + the use case's feature columns.

    Every event is history; the output has one row per event, or only the rows where the
    boolean mask ``rows`` is true, in the input order. Every feature is float64 (as the
    online engine returns them). The label is read only through delayed windows.
    ``side_tables`` (name -> rows) feed the ``asof`` features; a use case with some needs them.
    ``use_case`` may also be a ``FeatureSet`` built directly. With a Dask ``client`` the
    work runs on its cluster, sharded by entity (``sharded.py``): the same frame, bit for bit.
    """
    fs = _feature_set(use_case)
    if client is not None:
        from ml_platform.features.sharded import build_features_sharded

        return build_features_sharded(client, transactions, label_delay_days, rows, fs, side_tables)
    with _small_pages():
        return _build_features(transactions, label_delay_days, rows, fs, side_tables)


def build_features_for_days(
    transactions: pd.DataFrame,
    days: Iterable[date | str],
    label_delay_days: int = 7,
    *,
    use_case: UseCase | FeatureSet | str = DEFAULT_USE_CASE,
    side_tables: Mapping[str, pd.DataFrame] | None = None,
    client: Client | None = None,
) -> pd.DataFrame:
    """Features of the events that fall on ``days`` (every row is still history), with their
    keys: event id, event time, entity keys + the feature columns, in the input order. What
    a batch run over some days writes and scores."""
    from ml_platform.data.lake import on_days

    fs = _feature_set(use_case)
    own = on_days(transactions, days, column=fs.event_time)
    if client is not None:
        from ml_platform.features.sharded import build_features_sharded

        return build_features_sharded(
            client, transactions, label_delay_days, own, fs, side_tables, with_keys=True
        )
    out = build_features(
        transactions, label_delay_days, rows=own, use_case=use_case, side_tables=side_tables
    )
    for i, col in enumerate((fs.event_time, *fs.entity_columns), start=1):
        out.insert(i, col, transactions[col].to_numpy()[own])
    return out


def _feature_set(use_case: UseCase | FeatureSet | str) -> FeatureSet:
    return use_case if isinstance(use_case, FeatureSet) else feature_set(use_case)


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


def _label_times(tx: pd.DataFrame, fs: FeatureSet) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-row label times (ns, naive UTC) and whether each is known (not NaT), if read."""
    if fs.known_at not in fs.input_columns:
        return None
    times = naive_utc(tx[fs.known_at])
    return times.to_numpy(dtype="datetime64[ns]").view(np.int64), times.notna().to_numpy()


def _asof_features(
    fs: FeatureSet,
    tx: pd.DataFrame,
    t: np.ndarray,
    wanted: np.ndarray,
    side_tables: Mapping[str, pd.DataFrame] | None,
) -> dict[int, np.ndarray]:
    """Every ``asof`` feature of the wanted rows (feature position -> values): the side
    table's row with the event's join keys and the newest ``time + known_after <= t``; its
    column if that row is younger than the max age and the value is not null, else the
    feature's default. Rows sharing keys and availability time: the later row of the table
    wins (a correction appended to the table replaces what it corrects)."""
    joins: dict[tuple, list[int]] = {}
    for j, f in enumerate(fs.features):
        if f.aggregate == "asof":
            joins.setdefault((f.table, f.join), []).append(j)
    t_out = t[wanted]
    out = {}
    for (name, join), positions in joins.items():
        table = fs.side_table(name)
        if side_tables is None or name not in side_tables:
            raise ValueError(f"{fs.use_case}: side table {name!r} is missing (side_tables=)")
        rows = side_tables[name]
        wanted_columns = [key for _, key in join] + [table.time]
        wanted_columns += [fs.features[j].value for j in positions]
        missing = [c for c in dict.fromkeys(wanted_columns) if c not in rows.columns]
        if missing:
            raise ValueError(f"side table {name!r}: missing column(s) {missing}")
        if not pd.api.types.is_datetime64_any_dtype(rows[table.time]):
            raise ValueError(
                f"side table {name!r}: {table.time}: must be a datetime column, "
                f"got {rows[table.time].dtype}"
            )
        event_code, row_code = _join_codes(tx, wanted, rows, join)
        times = naive_utc(rows[table.time])
        usable = (row_code >= 0) & times.notna().to_numpy()
        available = times.to_numpy(dtype="datetime64[ns]").view(np.int64) + table.known_after_ns
        row = _newest_at_or_before(event_code, t_out, row_code, available, usable)
        found = row >= 0
        row = np.maximum(row, 0)  # a placeholder where none is found (masked by found)
        age = np.where(found, t_out - available[row], 0) if len(rows) else row
        for j in positions:
            f = fs.features[j]
            column = _side_values(rows, name, f.value)
            value = column[row] if len(rows) else np.full(len(row), np.nan)
            ok = found & (age < f.window_ns) & ~np.isnan(value)
            out[j] = np.where(ok, value, f.default)
    return out


def _join_codes(
    tx: pd.DataFrame, wanted: np.ndarray, rows: pd.DataFrame, join: tuple[tuple[str, str], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One int64 code per wanted event and per side-table row for their join keys, equal
    exactly when every key is equal (strings or integers); -1 for a table row with a null key."""
    m = int(wanted.sum())
    combined = None
    for event_column, key in join:
        both = np.concatenate([tx[event_column].to_numpy()[wanted], rows[key].to_numpy()])
        codes, uniques = pd.factorize(both)
        codes = codes.astype(np.int64)
        if combined is None:
            combined = codes
        else:
            null = (combined < 0) | (codes < 0)
            combined, _ = pd.factorize(combined * (len(uniques) + 1) + codes)
            combined = np.where(null, -1, combined.astype(np.int64))
    return combined[:m], combined[m:]


def _newest_at_or_before(
    code: np.ndarray, t: np.ndarray, row_code: np.ndarray, at: np.ndarray, usable: np.ndarray
) -> np.ndarray:
    """Per query, the table row with its code and the largest ``at <= t`` (the last such row
    of the table at a tie), or -1: one searchsorted on the key ``code * (U + 1) + rank(at)``."""
    rows = np.flatnonzero(usable)
    if not len(rows):
        return np.full(len(code), -1, dtype=np.int64)
    sort = np.lexsort((rows, at[rows], row_code[rows]))  # ties: the table's order
    rows = rows[sort]
    at_sorted = at[rows]
    uat = np.unique(at_sorted)
    stride = len(uat) + 1
    keys = row_code[rows] * stride + np.searchsorted(uat, at_sorted)
    q = code * stride + np.searchsorted(uat, t, "right")
    pos = np.searchsorted(keys, q, "left") - 1  # the last row with key < (code, rank after t)
    hit = pos >= 0
    hit[hit] = row_code[rows[pos[hit]]] == code[hit]
    return np.where(hit, rows[np.maximum(pos, 0)], -1)


def _side_values(rows: pd.DataFrame, table: str, column: str) -> np.ndarray:
    """A side-table column as float64 (null -> NaN, the feature's default then applies)."""
    try:
        values = rows[column].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as e:
        raise ValueError(f"side table {table!r}: {column}: must be numeric ({e})") from None
    if np.isinf(values).any():
        raise ValueError(f"side table {table!r}: {column}: must be finite or null")
    return values


def _build_features(
    transactions: pd.DataFrame,
    label_delay_days: int,
    rows: np.ndarray | None,
    fs: FeatureSet,
    side_tables: Mapping[str, pd.DataFrame] | None,
) -> pd.DataFrame:
    d = check_label_delay(label_delay_days)
    check_events(transactions, fs)
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
        elif f.aggregate == "hour":
            values[:, j] = (t_out % DAY_NS) // _HOUR_NS
        elif f.aggregate == "weekday":
            values[:, j] = (t_out // DAY_NS + 3) % 7  # 0 = Monday
        elif f.aggregate != "asof":
            per_row = f.known_at is not None
            if per_row and f.aggregate == "fraud_share_since_first":
                raise ValueError(
                    f"feature {f.name!r}: fraud_share_since_first needs a fixed label delay: "
                    "'events since the oldest positive' has no contiguous form by label time"
                )
            groups.setdefault((f.entity, f.window_ns, f.delayed, per_row), []).append(j)
    if any(f.aggregate == "asof" for f in features):
        for j, column in _asof_features(fs, transactions, t, wanted, side_tables).items():
            values[:, j] = column
    del t_out
    known_at = _label_times(transactions, fs)

    def run_entity(entity: str) -> None:
        ix = _EntityIndex(_keys(transactions[entity]), ev, wanted)
        sums = _Sums(ix, value_of, label, fs.label_task)
        frauds = _Frauds(ix, label) if label is not None and fs.label_task == "binary" else None
        at = dest[ix.rows]
        delay_end = None  # shared by every delayed window of the entity
        by_label_time = None  # (index, sums, frauds, window end) of the per-row label times
        for (e, w, delayed, per_row), cols in groups.items():
            if e != entity:
                continue
            if per_row:
                if by_label_time is None:
                    kix = _KnownIndex(ix, known_at[0], known_at[1], t, ids)
                    by_label_time = (
                        kix,
                        _Sums(kix, value_of, label, fs.label_task),
                        _Frauds(kix, label) if frauds is not None else None,
                        kix.first_after(0),
                    )
                kix, ksums, kfrauds, end = by_label_time
                start = kix.first_after(w)
                count = end - start
                for j in cols:
                    # the gap to the previous event reads no window edge: event order
                    f, own = features[j], features[j].aggregate == "seconds_since_prev"
                    values[at, j] = _aggregate(
                        *(f, ix, start, end, count, sums, frauds)
                        if own
                        else (f, kix, start, end, count, ksums, kfrauds),
                        value_of,
                        t,
                        fs.known_within_ns,
                    )
                del start, count
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
                    features[j], ix, start, end, count, sums, frauds, value_of, t, d * DAY_NS
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

    def __init__(self, ix: _Sorted, value_of: dict, label: np.ndarray | None, task: str):
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


def _aggregate(f, ix: _Sorted, start, end, count, sums: _Sums, frauds, value_of, t, lag_ns):
    """One feature's values for the wanted rows (aligned with ``ix.rows``); windows are the
    sorted positions ``[start, end)`` of ``ix``, ``lag_ns`` how far before t a delayed window
    may end (the delay, or the longest a per-row label takes): days_since_* with no positive."""
    m = len(ix.rows)
    if f.aggregate == "count":
        return count
    if f.aggregate in EXTREMUM_AGGREGATES:
        column = value_of[f.value] if f.value is not None else sums.label
        ufunc = np.minimum if f.aggregate == "min" else np.maximum
        return _range_extreme(column[ix.order].astype(np.float64), start, end, ufunc)
    if f.aggregate in ("risk", "fraud_count") and frauds is None:  # a numeric label
        if f.aggregate == "fraud_count":
            return ix.window_sum(sums.get("label"), start, end)
        mean = ix.window_sum(sums.get("label"), start, end, divide_by=count)
        mean[count == 0] = 0.0
        return mean
    cs_fraud = frauds.cs if frauds is not None else None
    empty_days = (lag_ns + (f.window_ns or 0)) / DAY_NS  # days_since_* with no positive
    if f.aggregate == "fraud_count":
        return cs_fraud[end] - cs_fraud[start]
    if isinstance(ix, _KnownIndex) and f.aggregate in (
        "days_since_fraud",
        "days_since_first_fraud",
    ):
        # the known order is not event order: the newest (oldest) positive's event time is a
        # range maximum (minimum) over the window's positives
        newest = f.aggregate == "days_since_fraud"
        bound = np.iinfo(np.int64).min if newest else np.iinfo(np.int64).max
        times = np.where(sums.label[ix.order] != 0, t[ix.order], bound)
        edge = _range_extreme(times, start, end, np.maximum if newest else np.minimum)
        hit = cs_fraud[end] != cs_fraud[start]
        out = np.full(m, empty_days)
        out[hit] = (t[ix.rows[hit]] - edge[hit]) / DAY_NS
        return out
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
