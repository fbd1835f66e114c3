"""The single source of truth for every feature: entity, window, aggregate and label delay.

Both engines (``batch.py`` for training and batch scoring, ``online.py`` for serving) read
these definitions, so a feature is described exactly once.

Semantics (time-based windows on ``tx_datetime``, never calendar days). Events are ordered
by ``(tx_datetime, transaction_id)``: at equal timestamps the transaction with the larger id
arrives later, so it is not yet known when the smaller one is scored.

- ``window`` aggregates (no delay): the entity's transactions in ``(t - w, t]`` that came
  at or before the current one in event order, the current one included;
- ``delayed`` aggregates: the entity's transactions in ``(t - (d + w), t - d]`` where ``d``
  is the label delay (a label is known ``d`` days after its transaction, so labels of
  transactions at or before ``t - d`` are known at ``t``); every tie at ``t - d`` counts;
- ``risk`` = frauds / count, 0 when the window is empty; ``mean_amount`` likewise 0;
- ``fraud_count`` = known frauds in the delayed window (not diluted by the legitimate
  transactions a terminal made before it was compromised);
- ``days_since_fraud`` = ``(t - time of the newest fraud in the delayed window) / 1 day``,
  ``d + w`` when the window holds no fraud (a recent known fraud = still compromised);
- ``days_since_first_fraud`` = the same for the *oldest* fraud in the window: a compromise
  lasts a limited spell, so the age of its first known fraud says how far into it we are;
- ``fraud_share_since_first`` = frauds in the window / the entity's transactions from the
  oldest of them up to ``t - d`` (0 when the window holds no fraud): how much of the traffic
  since the compromise began was fraud, undiluted by the quiet weeks before it;
- ``fraud_mean_amount`` = mean amount of the known frauds in the window (0 when none);
- ``tx_during_night``: hour <= 6 (06:59 counts as night); ``tx_during_weekend``: Sat or Sun.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT

Entity = Literal["customer_id", "terminal_id"]
Aggregate = Literal[
    "value",  # the request field itself
    "weekend",  # calendar flag from tx_datetime
    "night",  # calendar flag from tx_datetime
    "count",  # number of transactions in the window
    "mean_amount",  # mean tx_amount in the window (0 when empty)
    "risk",  # frauds / count in the window (0 when empty); needs a label delay
    "amount_ratio",  # tx_amount / mean amount of the window (1 when that mean is 0)
    "seconds_since_prev",  # seconds since the entity's previous transaction, capped at w
    "fraud_count",  # known frauds in the window; needs a label delay
    "days_since_fraud",  # days from t back to the newest known fraud in the window (d + w if none)
    "days_since_first_fraud",  # days from t back to the oldest known fraud in the window
    "fraud_share_since_first",  # frauds / transactions since the window's oldest known fraud
    "fraud_mean_amount",  # mean amount of the known frauds in the window (0 when none)
]

#: Aggregates that read labels: only allowed on delayed windows.
LABEL_AGGREGATES = (
    "risk",
    "fraud_count",
    "days_since_fraud",
    "days_since_first_fraud",
    "fraud_share_since_first",
    "fraud_mean_amount",
)

DAY_NS = 86_400 * 10**9
NIGHT_LAST_HOUR = 6  # tx_during_night: hour <= 6


@dataclass(frozen=True)
class FeatureDef:
    """One feature. ``delayed`` windows end ``label_delay_days`` before the transaction."""

    name: str
    aggregate: Aggregate
    entity: Entity | None = None
    window_days: int | None = None
    delayed: bool = False
    description: str = ""


def _customer(agg: Aggregate, w: int, name: str, desc: str, delayed: bool = False) -> FeatureDef:
    return FeatureDef(name, agg, CUSTOMER_ID, w, delayed, desc)


def _terminal(agg: Aggregate, w: int, name: str, desc: str) -> FeatureDef:
    return FeatureDef(name, agg, TERMINAL_ID, w, True, desc)


WINDOWS = (1, 7, 30)

#: The 15 base features of the Fraud-Detection-Handbook feature set, in its order.
REQUIRED: tuple[FeatureDef, ...] = (
    FeatureDef(TX_AMOUNT, "value", description="transaction amount"),
    FeatureDef("tx_during_weekend", "weekend", description="1 on Saturday or Sunday"),
    FeatureDef("tx_during_night", "night", description="1 when the hour is <= 6"),
    *(
        _customer("count", w, f"customer_id_nb_tx_{w}day_window", f"customer tx in (t-{w}d, t]")
        for w in WINDOWS
    ),
    *(
        _customer(
            "mean_amount",
            w,
            f"customer_id_avg_amount_{w}day_window",
            f"customer mean amount in (t-{w}d, t]",
        )
        for w in WINDOWS
    ),
    *(
        _terminal("count", w, f"terminal_id_nb_tx_{w}day_window", f"terminal tx in (t-d-{w}d, t-d]")
        for w in WINDOWS
    ),
    *(
        _terminal(
            "risk", w, f"terminal_id_risk_{w}day_window", f"terminal fraud share in (t-d-{w}d, t-d]"
        )
        for w in WINDOWS
    ),
)

#: Extra point-in-time features (after the required ones; same rules, both engines).
EXTRA: tuple[FeatureDef, ...] = (
    _customer(
        "amount_ratio",
        30,
        "customer_id_amount_ratio_30day_window",
        "tx_amount / customer mean amount in (t-30d, t] (spending spikes)",
    ),
    _customer(
        "seconds_since_prev",
        30,
        "customer_id_seconds_since_prev_tx",
        "seconds since the customer's previous tx, capped at 30 days (bursts)",
    ),
    _customer(
        "risk",
        7,
        "customer_id_risk_7day_window",
        "customer fraud share in (t-d-7d, t-d] (compromised cards, once labels mature)",
        delayed=True,
    ),
    _customer(
        "risk",
        30,
        "customer_id_risk_30day_window",
        "customer fraud share in (t-d-30d, t-d]",
        delayed=True,
    ),
    _customer(
        "amount_ratio",
        30,
        "customer_id_amount_ratio_30day_delayed",
        "tx_amount / customer mean amount in (t-d-30d, t-d] (a baseline that a card "
        "compromised within the last d days has not yet inflated; 1 when empty)",
        delayed=True,
    ),
    _terminal("count", 60, "terminal_id_nb_tx_60day_window", "terminal tx in (t-d-60d, t-d]"),
    _terminal(
        "risk", 60, "terminal_id_risk_60day_window", "terminal fraud share in (t-d-60d, t-d]"
    ),
    *(
        _terminal(
            "fraud_count",
            w,
            f"terminal_id_nb_fraud_{w}day_window",
            f"known terminal frauds in (t-d-{w}d, t-d]",
        )
        for w in (1, 7, 30)
    ),
    _terminal(
        "days_since_fraud",
        30,
        "terminal_id_days_since_fraud",
        "days since the terminal's newest known fraud in (t-d-30d, t-d]; d+30 if none",
    ),
    _terminal(
        "days_since_first_fraud",
        30,
        "terminal_id_days_since_first_fraud",
        "days since the terminal's oldest known fraud in (t-d-30d, t-d]; d+30 if none "
        "(how long the compromise has been going on)",
    ),
    _terminal(
        "fraud_share_since_first",
        30,
        "terminal_id_fraud_share_since_first_fraud",
        "known frauds in (t-d-30d, t-d] / the terminal's tx from the oldest of them to t-d "
        "(0 if none)",
    ),
    *(
        _terminal(
            "fraud_mean_amount",
            w,
            f"terminal_id_fraud_avg_amount_{w}day_window",
            f"mean amount of the terminal's known frauds in (t-d-{w}d, t-d] (0 if none)",
        )
        for w in (7, 30)
    ),
)

FEATURES: tuple[FeatureDef, ...] = REQUIRED + EXTRA
FEATURE_COLUMNS: list[str] = [f.name for f in FEATURES]
REQUIRED_COLUMNS: list[str] = [f.name for f in REQUIRED]


def _check() -> None:
    names = set()
    for f in FEATURES:
        if f.name in names:
            raise ValueError(f"feature {f.name!r}: defined twice")
        names.add(f.name)
        if f.entity is not None and (f.window_days is None or f.window_days < 1):
            raise ValueError(f"feature {f.name!r}: window_days must be >= 1")
        if f.aggregate in LABEL_AGGREGATES and not f.delayed:
            raise ValueError(
                f"feature {f.name!r}: {f.aggregate} reads labels, so it needs a label delay "
                "(delayed=True)"
            )


_check()


def horizon_days(label_delay_days: int) -> int:
    """How far back any feature looks: bounds the online state and the batch look-back."""
    return max(
        f.window_days + (label_delay_days if f.delayed else 0)
        for f in FEATURES
        if f.window_days is not None
    )


def check_label_delay(label_delay_days: int) -> int:
    """A delay of 0 would let a label be known at the instant of its transaction."""
    if int(label_delay_days) != label_delay_days or label_delay_days < 1:
        raise ValueError(f"label_delay_days: must be an integer >= 1, got {label_delay_days!r}")
    return int(label_delay_days)


def _version() -> str:
    payload = json.dumps(
        {
            "features": [asdict(f) for f in FEATURES],
            "night_last_hour": NIGHT_LAST_HOUR,
            "order": "tx_datetime,transaction_id",
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: Deterministic hash of the definitions; the model registry records it.
FEATURE_VERSION: str = _version()
