"""Fraud metrics: ROC AUC, average precision and card precision@k.

Two card-precision flavours:

* :func:`card_precision_at_k` - the simple per-day version used on validation windows: per
  day, rank customers (cards) by their highest score and take the precision of the top k.
* :func:`protocol_card_precision_at_k` - the exact quality protocol (README, backtest):
  cards already detected (true positives in an earlier day's top k) are dropped, then
  customers are grouped (highest score, highest label) and the top k counted.

:func:`protocol_test_mask` drops the customers already known to be compromised, and
:func:`protocol_metrics` puts the whole protocol together. Everything is vectorised except
the loop over test days that the "already detected" rule makes sequential.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import numpy as np
import pandas as pd

from ml_platform.data.contract import CUSTOMER_ID, TX_DATETIME, TX_FRAUD

DAY = "day"
SCORE = "score"


def _check_binary(y: np.ndarray, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {y.shape}")
    if len(y) and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0/1")
    return y.astype(np.int8, copy=False)


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (undefined, not an error)."""
    y = _check_binary(y_true)
    if len(np.unique(y)) < 2:
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(score, dtype=float)))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step-wise)."""
    y = _check_binary(y_true)
    if y.sum() == 0:
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, np.asarray(score, dtype=float)))


def _frame(
    df: pd.DataFrame, score: np.ndarray | pd.Series | str, day_col: str | None
) -> pd.DataFrame:
    """Normalise the inputs to columns day, customer_id, score, tx_fraud."""
    for col in (CUSTOMER_ID, TX_FRAUD):
        if col not in df.columns:
            raise ValueError(f"{col}: column required for card precision")
    scores = df[score].to_numpy() if isinstance(score, str) else np.asarray(score, dtype=float)
    if len(scores) != len(df):
        raise ValueError(f"score: {len(scores)} values for {len(df)} rows")
    if day_col is not None:
        day = df[day_col].to_numpy()
    elif TX_DATETIME in df.columns:
        day = df[TX_DATETIME].dt.normalize().to_numpy()
    else:
        raise ValueError(f"{TX_DATETIME}: column required to find each transaction's day")
    return pd.DataFrame(
        {
            DAY: day,
            CUSTOMER_ID: df[CUSTOMER_ID].to_numpy(),
            SCORE: scores,
            TX_FRAUD: df[TX_FRAUD].to_numpy(),
        }
    )


def _per_card(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (day, card): the card's highest score and highest label that day."""
    return frame.groupby([DAY, CUSTOMER_ID], sort=False, as_index=False).agg(
        {SCORE: "max", TX_FRAUD: "max"}
    )


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k: must be positive, got {k}")


def card_precision_at_k(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    k: int = 100,
    *,
    day_col: str | None = None,
) -> float:
    """Simple CP@k: per day, precision of the k cards with the highest score; mean over days."""
    _check_k(k)
    frame = _frame(df, score, day_col)
    if frame.empty:
        return float("nan")
    cards = _per_card(frame).sort_values([DAY, SCORE], ascending=[True, False], kind="stable")
    top = cards.groupby(DAY, sort=True).head(k)
    per_day = top.groupby(DAY, sort=True)[TX_FRAUD].sum() / k
    return float(per_day.mean())


def _protocol_days(frame: pd.DataFrame, k: int) -> Iterator[pd.DataFrame]:
    """Yield each day's top k cards in day order, without the cards detected on earlier days."""
    cards = _per_card(frame).sort_values([DAY, SCORE], ascending=[True, False], kind="stable")
    detected: set = set()
    for _, day_cards in cards.groupby(DAY, sort=True):
        if detected:
            day_cards = day_cards[~day_cards[CUSTOMER_ID].isin(detected)]
        top = day_cards.head(k)
        detected.update(top.loc[top[TX_FRAUD] == 1, CUSTOMER_ID].tolist())
        yield top


def protocol_card_precision_at_k(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    k: int = 100,
    *,
    day_col: str | None = None,
) -> tuple[float, list[float]]:
    """CP@k of the Quality protocol: (mean over days, per-day values).

    Days are taken in order; each day, cards detected on an earlier day (fraudulent and in
    that day's top k) are dropped before grouping by customer and taking the top k.
    """
    _check_k(k)
    frame = _frame(df, score, day_col)
    if frame.empty:
        return float("nan"), []
    per_day = [int(top[TX_FRAUD].sum()) / k for top in _protocol_days(frame, k)]
    return float(np.mean(per_day)), per_day


def protocol_alerts(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    k: int = 100,
    *,
    day_col: str | None = None,
) -> pd.DataFrame:
    """The cards :func:`protocol_card_precision_at_k` counts: each day's top k (day, card,
    highest score, highest label), for analyses of which frauds a model finds."""
    _check_k(k)
    frame = _frame(df, score, day_col)
    tops = list(_protocol_days(frame, k))
    return pd.concat(tops, ignore_index=True) if tops else _per_card(frame)


def protocol_test_mask(
    test: pd.DataFrame,
    history: pd.DataFrame,
    *,
    first_train_day: date,
    label_delay: int,
) -> np.ndarray:
    """Which test rows to keep: drop customers already known to be compromised.

    For test day T, a customer is known compromised when ``history`` holds one of their
    frauds dated between ``first_train_day`` and T - delay - 1 (inclusive).
    ``history`` is every labelled transaction from the first training day on.
    """
    required = {"test": (CUSTOMER_ID, TX_DATETIME), "history": (CUSTOMER_ID, TX_DATETIME, TX_FRAUD)}
    for name, frame in (("test", test), ("history", history)):
        missing = [c for c in required[name] if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}.{missing[0]}: column required for the protocol test set")
    first = pd.Timestamp(first_train_day)
    hist_day = history[TX_DATETIME].dt.normalize()
    frauds = history.loc[(history[TX_FRAUD] == 1) & (hist_day >= first)]
    first_fraud = frauds.assign(_d=hist_day.loc[frauds.index]).groupby(CUSTOMER_ID)["_d"].min()
    known_since = test[CUSTOMER_ID].map(first_fraud)  # NaT when never fraudulent
    cutoff = test[TX_DATETIME].dt.normalize() - pd.Timedelta(days=label_delay + 1)
    known = known_since.notna() & (known_since <= cutoff)
    return ~known.to_numpy()


def validation_metrics(
    df: pd.DataFrame, score: np.ndarray, k: int = 100, *, day_col: str | None = None
) -> dict[str, float]:
    """AUC, AP and the simple per-day CP@k on a validation window."""
    y = df[TX_FRAUD].to_numpy()
    return {
        "roc_auc": roc_auc(y, score),
        "average_precision": average_precision(y, score),
        f"card_precision_at_{k}": card_precision_at_k(df, score, k, day_col=day_col),
        "n_transactions": float(len(df)),
        "n_frauds": float(int(np.asarray(y).sum())),
    }


def protocol_metrics(
    test: pd.DataFrame,
    score: np.ndarray,
    history: pd.DataFrame,
    *,
    first_train_day: date,
    label_delay: int,
    k: int = 100,
) -> dict[str, object]:
    """The Quality protocol: drop known-compromised customers, then AUC, AP and CP@k.

    ``score`` is aligned with ``test`` (every test transaction); the metrics use the kept rows.
    """
    score = np.asarray(score, dtype=float)
    if len(score) != len(test):
        raise ValueError(f"score: {len(score)} values for {len(test)} test rows")
    keep = protocol_test_mask(
        test, history, first_train_day=first_train_day, label_delay=label_delay
    )
    kept = test.loc[keep]
    s = score[keep]
    y = kept[TX_FRAUD].to_numpy()
    cp, per_day = protocol_card_precision_at_k(kept, s, k)
    return {
        "roc_auc": roc_auc(y, s),
        "average_precision": average_precision(y, s),
        f"card_precision_at_{k}": cp,
        f"card_precision_at_{k}_per_day": [round(v, 4) for v in per_day],
        "n_test_transactions": int(len(test)),
        "n_scored_after_protocol": int(keep.sum()),
        "n_frauds_after_protocol": int(y.sum()),
    }
