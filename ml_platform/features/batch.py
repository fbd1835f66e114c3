"""Batch feature engine: every window of every transaction at once, with numpy.

Per entity the rows are sorted by ``(entity, tx_datetime, transaction_id)`` (event order).
Each window edge becomes one ``searchsorted`` on a composite integer key
``entity_code * (U + 1) + time_rank`` (``time_rank`` = rank of the timestamp among the U
distinct timestamps, so nanosecond timestamps stay exact and the key never overflows);
counts, sums and fraud counts are then differences of prefix sums. Amount prefix sums are
*segmented* (they restart at every entity, 80-bit extended precision): a row's window mean
depends on its own entity's earlier amounts only, so it is bit-identical whether or not other
entities or later rows exist (the point-in-time property, exactly), and stays exact to
~1e-12 however large the amounts elsewhere.
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

import numpy as np
import pandas as pd

from ml_platform.data.contract import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)
from ml_platform.features.definitions import (
    DAY_NS,
    FEATURE_COLUMNS,
    FEATURES,
    NIGHT_LAST_HOUR,
    check_label_delay,
)

_HOUR_NS = 3600 * 10**9
_CHUNK_CELLS = 1 << 20  # padded cells per cumsum block: bounds the temporary memory
_CHUNK_ROWS = 1 << 18  # rows per extended-precision window-sum block
INPUT_COLUMNS = (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD)


def _check_input(tx: pd.DataFrame) -> None:
    missing = [c for c in INPUT_COLUMNS if c not in tx.columns]
    if missing:
        raise ValueError(f"transactions: missing column(s) {missing}")
    if not pd.api.types.is_datetime64_any_dtype(tx[TX_DATETIME]):
        raise ValueError(f"{TX_DATETIME}: must be a datetime column, got {tx[TX_DATETIME].dtype}")
    for col in (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD):
        if tx[col].isna().any():
            raise ValueError(f"{col}: contains nulls")
    if tx[TX_DATETIME].isna().any():
        raise ValueError(f"{TX_DATETIME}: contains nulls")
    if tx[TRANSACTION_ID].duplicated().any():
        raise ValueError(f"{TRANSACTION_ID}: not unique")


def naive_utc(times: pd.Series) -> pd.Series:
    """Timezone-aware timestamps become naive UTC (the online engine does the same)."""
    if getattr(times.dt, "tz", None) is not None:
        return times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times


def _index_dtype(n: int) -> type:
    """Positions fit in int32 below 2**31 rows: half the memory of int64 index arrays."""
    return np.int32 if n < 2**31 - 1 else np.int64


class _Events:
    """All rows in event order ``(tx_datetime, transaction_id)`` with dense time ranks."""

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
    transactions: pd.DataFrame, label_delay_days: int = 7, *, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """Point-in-time features: ``transaction_id`` + FEATURE_COLUMNS.

    Every transaction is history; the output has one row per transaction, or only the rows
    where the boolean mask ``rows`` is true, in the input order. Every feature is float64
    (as the online engine returns them). ``tx_fraud`` is read only through delayed windows.
    """
    with _small_pages():
        return _build_features(transactions, label_delay_days, rows)


def build_features_for_days(
    transactions: pd.DataFrame, days: Iterable[date | str], label_delay_days: int = 7
) -> pd.DataFrame:
    """Features of the transactions that fall on ``days`` (every row is still history), with
    their keys: ``transaction_id, tx_datetime, customer_id, terminal_id`` + FEATURE_COLUMNS,
    in the input order. What a batch run over some days writes and scores."""
    from ml_platform.data.lake import on_days

    own = on_days(transactions, days)
    out = build_features(transactions, label_delay_days, rows=own)
    for i, col in enumerate((TX_DATETIME, CUSTOMER_ID, TERMINAL_ID), start=1):
        out.insert(i, col, transactions[col].to_numpy()[own])
    return out


def _build_features(
    transactions: pd.DataFrame, label_delay_days: int, rows: np.ndarray | None
) -> pd.DataFrame:
    d = check_label_delay(label_delay_days)
    _check_input(transactions)
    n = len(transactions)
    wanted = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if wanted.shape != (n,):
        raise ValueError(f"rows: expected a boolean mask of {n} rows, got shape {wanted.shape}")
    t = naive_utc(transactions[TX_DATETIME]).to_numpy(dtype="datetime64[ns]").view(np.int64)
    ids = transactions[TRANSACTION_ID].to_numpy(np.int64)
    amount = transactions[TX_AMOUNT].to_numpy(np.float64)
    fraud = transactions[TX_FRAUD].to_numpy()
    if not np.isfinite(amount).all():
        raise ValueError(f"{TX_AMOUNT}: must be finite")
    if ((fraud != 0) & (fraud != 1)).any():
        raise ValueError(f"{TX_FRAUD}: must be 0 or 1")

    # One float64 block, column-major, filled in place: no consolidation copy at the end.
    m = int(wanted.sum())
    dest = np.cumsum(wanted, dtype=_index_dtype(n)) - 1  # output row of each wanted input row
    values = np.empty((m, len(FEATURES)), dtype=np.float64, order="F")
    ev = _Events(t, ids, wanted)
    t_out = t[wanted]
    groups: dict[tuple, list[int]] = {}
    for j, f in enumerate(FEATURES):
        if f.aggregate == "value":
            values[:, j] = amount[wanted]
        elif f.aggregate == "weekend":
            values[:, j] = (t_out // DAY_NS + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        elif f.aggregate == "night":
            values[:, j] = (t_out % DAY_NS) // _HOUR_NS <= NIGHT_LAST_HOUR
        else:
            groups.setdefault((f.entity, f.window_days, f.delayed), []).append(j)
    del t_out

    aggregates_of: dict[str, set[str]] = {}
    for (e, _, _), cols in groups.items():
        aggregates_of.setdefault(e, set()).update(FEATURES[j].aggregate for j in cols)

    def run_entity(entity: str) -> None:
        ix = _EntityIndex(transactions[entity].to_numpy(np.int64), ev, wanted)
        # running amount sums per entity, 80-bit: exact means; the few known frauds of an
        # entity need no more than float64
        sums = {"amount": ix.segmented_prefix(amount, np.longdouble)}
        if "fraud_mean_amount" in aggregates_of[entity]:
            sums["fraud_amount"] = ix.segmented_prefix(amount * (fraud != 0), np.float64)
        frauds = _Frauds(ix, fraud)
        at = dest[ix.rows]
        delay_end = None  # shared by every delayed window of the entity
        for (e, w, delayed), cols in groups.items():
            if e != entity:
                continue
            if delayed:
                start = ix.first_after((d + w) * DAY_NS)
                if delay_end is None:
                    delay_end = ix.first_after(d * DAY_NS)
                end = delay_end
            else:
                start = ix.first_after(w * DAY_NS)
                end = ix.out + 1  # up to the row, event order
            count = end - start
            for j in cols:
                values[at, j] = _aggregate(
                    FEATURES[j], ix, start, end, count, sums, frauds, amount, t, d
                )
            del start, end, count

    # One entity after the other keeps peak memory near one entity's working set.
    for entity in dict.fromkeys(key[0] for key in groups):
        run_entity(entity)
    out = pd.DataFrame(values, columns=FEATURE_COLUMNS, copy=False)
    out.insert(0, TRANSACTION_ID, ids[wanted])
    return out


def _aggregate(f, ix: _EntityIndex, start, end, count, sums, frauds: _Frauds, amount, t, d):
    """One feature's values for the wanted rows (aligned with ``ix.out``)."""
    m = len(ix.out)
    cs_fraud = frauds.cs
    if f.aggregate == "count":
        return count
    if f.aggregate == "fraud_count":
        return cs_fraud[end] - cs_fraud[start]
    if f.aggregate == "days_since_fraud":
        # newest fraud at a sorted position < end
        idx = np.full(m, -1, dtype=np.int64)
        has_rows = end > 0
        idx[has_rows] = frauds.newest_before()[end[has_rows] - 1]
        hit = idx >= start  # start is inside the entity, so a hit is the same entity
        out = np.full(m, float(d + f.window_days))
        out[hit] = (t[ix.rows[hit]] - t[ix.order[idx[hit]]]) / DAY_NS
        return out
    if f.aggregate in ("days_since_first_fraud", "fraud_share_since_first"):
        idx = frauds.oldest_from()[start]  # oldest fraud at a sorted position >= start
        hit = idx < end  # before the window's end, so inside the window (same entity)
        if f.aggregate == "days_since_first_fraud":
            out = np.full(m, float(d + f.window_days))
            out[hit] = (t[ix.rows[hit]] - t[ix.order[idx[hit]]]) / DAY_NS
            return out
        out = np.zeros(m)
        n_frauds = cs_fraud[end] - cs_fraud[start]
        out[hit] = n_frauds[hit] / (end[hit] - idx[hit])
        return out
    if f.aggregate == "fraud_mean_amount":
        n_frauds = cs_fraud[end] - cs_fraud[start]
        total = ix.window_sum(sums["fraud_amount"], start, end)
        return np.divide(total, n_frauds, out=np.zeros(m), where=n_frauds > 0)
    if f.aggregate in ("mean_amount", "amount_ratio"):
        mean = ix.window_sum(sums["amount"], start, end, divide_by=count)
        mean[count == 0] = 0.0
        if f.aggregate == "mean_amount":
            return mean
        return np.divide(amount[ix.rows], mean, out=np.ones(m), where=mean != 0)
    if f.aggregate == "risk":
        n_frauds = cs_fraud[end] - cs_fraud[start]
        return np.divide(n_frauds, count, out=np.zeros(m), where=count > 0)
    if f.aggregate == "seconds_since_prev":
        cap = f.window_days * 86_400.0
        gap = np.full(m, cap)
        same = ix.out > ix.first  # the entity has an earlier row
        prev = ix.order[ix.out[same] - 1]
        gap[same] = (t[ix.rows[same]] - t[prev]) / 1e9
        return np.minimum(gap, cap)  # a previous tx w days back or more is outside the window
    raise ValueError(f"feature {f.name!r}: unknown aggregate {f.aggregate!r}")
