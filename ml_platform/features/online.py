"""Online feature engine: one transaction at a time, from the entity state in the store.

Same definitions and semantics as the batch engine (``definitions.py``): one store round
trip fetches the customer's and the terminal's recent state, numpy over those few dozen
entries computes every feature, then ``record`` appends the transaction to the state.
Used by the serving path, so it imports neither Dagster nor pandas-heavy code paths.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data.contract import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
)
from ml_platform.features.definitions import (
    DAY_NS,
    FEATURE_COLUMNS,
    FEATURES,
    NIGHT_LAST_HOUR,
    check_label_delay,
)
from ml_platform.features.stores.base import OnlineStore, TxRecord, to_ns

_HOUR_NS = 3600 * 10**9


def parse_tx(tx: Mapping[str, Any] | Any) -> TxRecord:
    """A request (dict or object with the request fields, no label) as a ``TxRecord``."""

    get = tx.get if isinstance(tx, Mapping) else lambda name: getattr(tx, name, None)

    def field(name: str) -> Any:
        value = get(name)
        if value is None:
            raise ValueError(f"{name}: missing")
        return value

    try:
        time_ns = to_ns(field(TX_DATETIME))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{TX_DATETIME}: not a timestamp ({exc})") from None
    out = {}
    for name in (TRANSACTION_ID, CUSTOMER_ID, TERMINAL_ID):
        value = field(name)
        if isinstance(value, bool) or int(value) != value:
            raise ValueError(f"{name}: must be an integer, got {value!r}")
        out[name] = int(value)
    amount = float(field(TX_AMOUNT))
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{TX_AMOUNT}: must be finite and >= 0, got {amount!r}")
    return TxRecord(out[TRANSACTION_ID], time_ns, out[CUSTOMER_ID], out[TERMINAL_ID], amount)


class OnlineFeatureEngine:
    """``compute(tx) -> np.ndarray`` in FEATURE_COLUMNS order; ``record(tx)`` updates state."""

    columns: list[str] = FEATURE_COLUMNS

    def __init__(self, store: OnlineStore, label_delay_days: int = 7) -> None:
        self.d = check_label_delay(label_delay_days)
        if store.label_delay_days != self.d:
            raise ValueError(f"label_delay_days: engine {self.d} != store {store.label_delay_days}")
        self.store = store
        # Per entity, every window edge as an offset back from t: one searchsorted finds all.
        offsets: dict[str, list[int]] = {CUSTOMER_ID: [], TERMINAL_ID: []}

        def slot(entity: str, offset_ns: int) -> int:
            if offset_ns not in offsets[entity]:
                offsets[entity].append(offset_ns)
            return offsets[entity].index(offset_ns)

        self._plan = []
        for j, f in enumerate(FEATURES):
            if f.entity is None:
                self._plan.append((j, f.aggregate, None, 0, 0, 0.0))
            elif f.delayed:
                d_ns = self.d * DAY_NS
                lo, hi = slot(f.entity, d_ns + f.window_ns), slot(f.entity, d_ns)
                cap = (d_ns + f.window_ns) / DAY_NS  # days_since_fraud with no fraud
                self._plan.append((j, f.aggregate, f.entity, lo, hi, cap))
            else:
                cap = f.window_ns / 1e9
                self._plan.append(
                    (j, "now_" + f.aggregate, f.entity, slot(f.entity, f.window_ns), -1, cap)
                )
        self._offsets = {e: np.array(o, dtype=np.int64) for e, o in offsets.items()}
        # how far back each entity's features look: fetch no more than that
        self._reach = {e: int(o.max()) if len(o) else 0 for e, o in self._offsets.items()}

    def compute(self, tx: Mapping[str, Any] | Any) -> np.ndarray:
        """Features of ``tx`` from state strictly before it in event order (not recorded)."""
        r = tx if isinstance(tx, TxRecord) else parse_tx(tx)
        t, amount = r.time_ns, r.tx_amount
        cust, term = self.store.fetch(
            r.customer_id,
            r.terminal_id,
            t - self._reach[CUSTOMER_ID],
            t - self._reach[TERMINAL_ID],
            t,
        )
        ctx = {}
        for entity, s in ((CUSTOMER_ID, cust), (TERMINAL_ID, term)):
            times = s.times  # sorted ascending, all <= t
            pos = np.searchsorted(times, t - self._offsets[entity], side="right").tolist()
            e0 = int(np.searchsorted(times, t, side="left"))  # first entry at time t
            # entries at exactly t are before this one only if their id is smaller
            tie = s.ids[e0:] < r.transaction_id
            tie_n = int(tie.sum())
            tie_sum = float(s.amounts[e0:][tie].sum()) if tie_n else 0.0
            cs_a = np.concatenate(([0.0], np.cumsum(s.amounts))).tolist()
            cs_f = np.concatenate(([0], np.cumsum(s.frauds))).tolist()
            ctx[entity] = (times, pos, e0, tie_n, tie_sum, cs_a, cs_f, s.frauds, s.amounts)

        out = np.empty(len(FEATURES), dtype=np.float64)
        for j, agg, entity, a, b, cap in self._plan:
            if agg == "value":
                out[j] = amount
            elif agg == "weekend":
                out[j] = float((t // DAY_NS + 3) % 7 >= 5)  # 1970-01-01 was a Thursday
            elif agg == "night":
                out[j] = float((t % DAY_NS) // _HOUR_NS <= NIGHT_LAST_HOUR)
            else:
                times, pos, e0, tie_n, tie_sum, cs_a, cs_f, frauds, amounts = ctx[entity]
                if b >= 0:  # delayed window (t - d - w, t - d]
                    lo, hi = pos[a], pos[b]
                    n = hi - lo
                    if agg == "count":
                        out[j] = n
                    elif agg == "risk":
                        out[j] = (cs_f[hi] - cs_f[lo]) / n if n else 0.0
                    elif agg == "amount_ratio":
                        mean = (cs_a[hi] - cs_a[lo]) / n if n else 0.0
                        out[j] = amount / mean if mean != 0 else 1.0
                    elif agg == "fraud_count":
                        out[j] = cs_f[hi] - cs_f[lo]
                    elif agg == "days_since_fraud":
                        hits = np.flatnonzero(frauds[lo:hi])
                        out[j] = (t - int(times[lo + hits[-1]])) / DAY_NS if len(hits) else cap
                    elif agg == "days_since_first_fraud":
                        hits = np.flatnonzero(frauds[lo:hi])
                        out[j] = (t - int(times[lo + hits[0]])) / DAY_NS if len(hits) else cap
                    elif agg == "fraud_share_since_first":
                        hits = np.flatnonzero(frauds[lo:hi])
                        out[j] = len(hits) / (n - hits[0]) if len(hits) else 0.0
                    elif agg == "fraud_mean_amount":
                        hit = frauds[lo:hi] != 0
                        k = int(hit.sum())
                        out[j] = float(amounts[lo:hi][hit].sum()) / k if k else 0.0
                    else:
                        out[j] = (cs_a[hi] - cs_a[lo]) / n if n else 0.0
                    continue
                start = pos[a]  # window (t - w, t] up to this transaction, itself included
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
                    mean = (cs_a[e0] - cs_a[start] + tie_sum + amount) / n
                    if agg == "now_mean_amount":
                        out[j] = mean
                    elif agg == "now_amount_ratio":
                        out[j] = amount / mean if mean != 0 else 1.0
                    else:  # pragma: no cover - guarded by definitions._check
                        raise ValueError(f"feature {FEATURES[j].name!r}: unsupported {agg!r}")
        return out

    def record(self, tx: Mapping[str, Any] | Any) -> None:
        """Append ``tx`` to its customer's and terminal's state (idempotent)."""
        self.store.append(tx if isinstance(tx, TxRecord) else parse_tx(tx))

    def compute_and_record(self, tx: Mapping[str, Any] | Any) -> np.ndarray:
        r = tx if isinstance(tx, TxRecord) else parse_tx(tx)
        values = self.compute(r)
        self.store.append(r)
        return values

    def record_labels(self, labeled: pd.DataFrame) -> int:
        """Store matured fraud labels (contract columns incl. ``tx_fraud``); returns frauds."""
        return self.store.set_frauds(labeled)
