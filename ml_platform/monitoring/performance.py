"""Model performance on delayed labels, per day, model version and prediction source.

Labels mature ``label_delay_days`` after a transaction; only then is a prediction's outcome
known. The join of predictions with matured labels is the dbt model
``fct_prediction_outcomes``; this module computes the ranking metrics SQL does not do well
(ROC AUC, average precision, card precision@100) plus the fraud-catch rate of the decision
threshold, per (day, model version, source) group. Metrics come from
:mod:`ml_platform.training.metrics`, the same code the training stage uses.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from ml_platform.data.contract import CUSTOMER_ID, TRANSACTION_ID, TX_FRAUD

DAY = "tx_date"
MODEL_VERSION = "model_version"
SOURCE = "source"
SCORE = "score"
DECISION = "is_fraud"
GROUP_KEYS = (DAY, MODEL_VERSION, SOURCE)
OUTCOME_COLUMNS = (
    TRANSACTION_ID,
    DAY,
    CUSTOMER_ID,
    MODEL_VERSION,
    SOURCE,
    SCORE,
    DECISION,
    TX_FRAUD,
)
PERFORMANCE_COLUMNS = (
    *GROUP_KEYS,
    "n_transactions",
    "n_fraud",
    "n_flagged",
    "n_caught",
    "roc_auc",
    "average_precision",
    "card_precision_at_100",
    "fraud_catch_rate",
    "flagged_precision",
)


def matured_days(as_of: date, label_delay_days: int, days: list[date]) -> list[date]:
    """Days whose labels are known at ``as_of`` (strictly older than the label delay)."""
    cutoff = as_of - timedelta(days=label_delay_days)
    return [d for d in days if d < cutoff]


def daily_performance(outcomes: pd.DataFrame, k: int = 100) -> pd.DataFrame:
    """One row per (day, model version, source) with the metrics of PERFORMANCE_COLUMNS.

    ``outcomes`` has the columns of OUTCOME_COLUMNS (``is_fraud`` is the model's decision at
    its threshold, ``tx_fraud`` the matured label). AUC/AP are NaN when a group has a single
    class (undefined, e.g. a day without fraud).
    """
    from ml_platform.training.metrics import average_precision, card_precision_at_k, roc_auc

    missing = [c for c in OUTCOME_COLUMNS if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes.{missing[0]}: column required for performance metrics")
    if outcomes.empty:
        return pd.DataFrame(columns=list(PERFORMANCE_COLUMNS))
    frame = outcomes.assign(
        **{
            TX_FRAUD: outcomes[TX_FRAUD].astype("int8"),
            DECISION: outcomes[DECISION].astype(bool),
            SCORE: outcomes[SCORE].astype("float64"),
        }
    )
    bad = frame[~frame[TX_FRAUD].isin((0, 1))]
    if len(bad):
        raise ValueError(f"outcomes.{TX_FRAUD}: labels must be 0/1, got {bad[TX_FRAUD].iloc[0]}")
    if not np.isfinite(frame[SCORE].to_numpy()).all():
        raise ValueError(f"outcomes.{SCORE}: scores must be finite")
    keys = list(GROUP_KEYS)
    counts = (
        frame.assign(_caught=frame[DECISION] & (frame[TX_FRAUD] == 1))
        .groupby(keys, sort=True, dropna=False)
        .agg(
            n_transactions=(SCORE, "size"),
            n_fraud=(TX_FRAUD, "sum"),
            n_flagged=(DECISION, "sum"),
            n_caught=("_caught", "sum"),
        )
    )
    ranking = []
    for key, group in frame.groupby(keys, sort=True, dropna=False):
        y, s = group[TX_FRAUD].to_numpy(), group[SCORE].to_numpy()
        ranking.append(
            (
                *key,
                roc_auc(y, s),
                average_precision(y, s),
                card_precision_at_k(group, SCORE, k, day_col=DAY),
            )
        )
    metrics = pd.DataFrame(
        ranking, columns=[*keys, "roc_auc", "average_precision", "card_precision_at_100"]
    ).set_index(keys)
    out = counts.join(metrics).reset_index()
    out["fraud_catch_rate"] = out["n_caught"] / out["n_fraud"].where(out["n_fraud"] > 0)
    out["flagged_precision"] = out["n_caught"] / out["n_flagged"].where(out["n_flagged"] > 0)
    for col in ("n_transactions", "n_fraud", "n_flagged", "n_caught"):
        out[col] = out[col].astype("int64")
    return out[list(PERFORMANCE_COLUMNS)]


def pooled_average_precision(
    outcomes: pd.DataFrame,
    model_version: str,
    days: list[date],
    *,
    source: str = "batch",
) -> float | None:
    """AP of one model version over several labeled days pooled together.

    Pooled, like the validation AP the registry records for the champion, so the two are
    comparable (a mean of daily APs is not). ``None`` when the days hold no fraud.
    """
    from ml_platform.training.metrics import average_precision

    if outcomes.empty or not days:
        return None
    rows = outcomes[
        (outcomes[MODEL_VERSION].astype(str) == str(model_version))
        & (outcomes[SOURCE] == source)
        & pd.to_datetime(outcomes[DAY]).dt.date.isin(set(days))
    ]
    if rows.empty or rows[TX_FRAUD].sum() == 0:
        return None
    return average_precision(rows[TX_FRAUD].to_numpy(), rows[SCORE].to_numpy())


def trailing_average_precision(outcomes: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Per (version, source, day): AP pooled over the trailing ``window_days`` labeled days.

    The performance rule of the retraining policy reads the latest of these for the
    champion. Days are those present for the group (a day without predictions is skipped).
    """
    from ml_platform.training.metrics import average_precision

    if window_days < 1:
        raise ValueError(f"window_days: must be >= 1, got {window_days}")
    cols = [DAY, MODEL_VERSION, SOURCE, "trailing_average_precision", "trailing_days"]
    if outcomes.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    frame = outcomes.assign(**{DAY: pd.to_datetime(outcomes[DAY]).dt.date})
    for (version, source), group in frame.groupby([MODEL_VERSION, SOURCE], sort=True):
        days = sorted(group[DAY].unique())
        by_day = {d: g for d, g in group.groupby(DAY)}
        for i, day in enumerate(days):
            window = days[max(0, i - window_days + 1) : i + 1]
            pooled = pd.concat([by_day[d] for d in window])
            y = pooled[TX_FRAUD].to_numpy()
            ap = average_precision(y, pooled[SCORE].to_numpy()) if y.sum() else np.nan
            rows.append((day, version, source, ap, len(window)))
    return pd.DataFrame(rows, columns=cols)


def recent_average_precision(
    performance: pd.DataFrame,
    model_version: str,
    *,
    last_days: int,
    source: str = "batch",
) -> tuple[float | None, list]:
    """Mean AP of ``model_version`` over its latest ``last_days`` labeled days (and the days).

    Days where AP is undefined (no fraud) are skipped; ``None`` when nothing is measurable.
    """
    if performance.empty:
        return None, []
    rows = performance[
        (performance[MODEL_VERSION].astype(str) == str(model_version))
        & (performance[SOURCE] == source)
        & performance["average_precision"].notna()
    ].sort_values(DAY)
    rows = rows.tail(last_days)
    if rows.empty:
        return None, []
    return float(rows["average_precision"].mean()), list(rows[DAY])
