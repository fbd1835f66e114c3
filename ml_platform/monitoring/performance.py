"""Model performance on delayed labels, per day, model version and prediction source.

A label becomes known some time after its event (a fixed delay, or a per-row time); only
then is a prediction's outcome known. The join of predictions with matured labels is the
dbt model ``fct_prediction_outcomes`` of the use case; this module computes the metrics of
the use case's task per (day, model version, source) group. Binary: ROC AUC, average
precision and the task's extra metrics (fraud's card precision@100), the catch rate and
the precision of the decision threshold. Regression: MAE, RMSE, R² (and any extra metric),
the mean prediction and label and how many events the flag raised. The primary metric is
also pooled over trailing days (what the retraining policy compares with the champion's
validation figure, in the metric's direction). Metrics come from
:mod:`ml_platform.training.metrics`, the same code the training stage uses.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_platform.defs.names import WAREHOUSE_DAY

if TYPE_CHECKING:
    from ml_platform.use_cases import UseCase

DAY = WAREHOUSE_DAY
MODEL_VERSION = "model_version"
SOURCE = "source"
SCORE = "score"
GROUP_KEYS = (DAY, MODEL_VERSION, SOURCE)
#: The metric of the SQL mart each task's Python table is cross-checked with (``<name>_sql``).
SQL_CROSS_CHECK = {"binary": "roc_auc", "regression": "mean_absolute_error"}
#: Binary: the ranking metrics always reported (the task's extra metrics follow them).
BINARY_RANKING = ("roc_auc", "average_precision")
#: Regression: the error metrics always reported.
REGRESSION_ERRORS = ("mean_absolute_error", "root_mean_squared_error", "r2")


def _use_case(use_case: UseCase | str | None) -> UseCase:
    from ml_platform.monitoring.monitored import Monitored

    return Monitored.of(use_case).use_case


def _roles(uc: UseCase) -> tuple[str, str, str]:
    """(event id, decision, label) columns of a use case's outcomes."""
    from ml_platform.serving.scoring import decision_column

    return uc.spec.event_schema.event_id.column, decision_column(uc), uc.spec.label.column


def outcome_columns(use_case: UseCase | str | None = None) -> tuple[str, ...]:
    """The columns performance reads of a use case's outcomes: event id, day, the entities
    its extra metrics rank, model version, source, score, decision, label."""
    uc = _use_case(use_case)
    event_id, decision, label = _roles(uc)
    entities = [m.entity for m in uc.spec.task.extra_metrics if not isinstance(m, str) and m.entity]
    return (
        event_id,
        DAY,
        *dict.fromkeys(entities),
        MODEL_VERSION,
        SOURCE,
        SCORE,
        decision,
        label,
    )


def performance_columns(use_case: UseCase | str | None = None) -> tuple[str, ...]:
    """The columns of :func:`daily_performance` for a use case."""
    uc = _use_case(use_case)
    measures = _measure_names(uc)
    if uc.task == "binary":
        counts = ("n_transactions", "n_fraud", "n_flagged", "n_caught")
        rates = ("fraud_catch_rate", "flagged_precision")
        return (*GROUP_KEYS, *counts, *measures, *rates)
    means = ("mean_prediction", "mean_label", "n_flagged")
    return (*GROUP_KEYS, "n_predictions", *measures, *means)


def _measure_names(uc: UseCase) -> list[str]:
    from ml_platform.training.metrics import task_metrics

    first = BINARY_RANKING if uc.task == "binary" else REGRESSION_ERRORS
    return list(dict.fromkeys([*first, *task_metrics(uc).measures]))


def matured_days(as_of: date, label_delay_days: int, days: list[date]) -> list[date]:
    """Days whose labels are known at ``as_of`` (strictly older than the label delay)."""
    cutoff = as_of - timedelta(days=label_delay_days)
    return [d for d in days if d < cutoff]


def daily_performance(
    outcomes: pd.DataFrame, k: int = 100, *, use_case: UseCase | str | None = None
) -> pd.DataFrame:
    """One row per (day, model version, source) with the metrics of
    :func:`performance_columns` (the use case's task; default: the flagship).

    ``outcomes`` has the columns of :func:`outcome_columns` (the decision is the model's at
    its threshold or flag bound, the label the matured one). ``k`` is the k of the binary
    task's entity precision. Binary AUC/AP are NaN when a group has a single class
    (undefined, e.g. a day without fraud); R² is NaN on a constant label.
    """
    from ml_platform.training.metrics import task_metrics

    uc = _use_case(use_case)
    _, decision, label = _roles(uc)
    missing = [c for c in outcome_columns(uc) if c not in outcomes.columns]
    if missing:
        raise ValueError(f"outcomes.{missing[0]}: column required for performance metrics")
    columns = performance_columns(uc)
    if outcomes.empty:
        return pd.DataFrame(columns=list(columns))
    frame = _checked(outcomes, uc.task, decision, label)
    tm = task_metrics(uc, k=k, day_col=DAY)
    measures = {name: tm.measures.get(name) for name in _measure_names(uc)}
    for name in measures:
        if measures[name] is None:  # always reported, even when the task does not declare it
            from ml_platform.training.metrics import metric

            m = metric(name, uc.task)
            measures[name] = lambda df, score, m=m: m.compute(df[label].to_numpy(), score)
    keys = list(GROUP_KEYS)
    rows = []
    for key, group in frame.groupby(keys, sort=True, dropna=False):
        score = group[SCORE].to_numpy()
        rows.append((*key, *(f(group, score) for f in measures.values())))
    metrics = pd.DataFrame(rows, columns=[*keys, *measures]).set_index(keys)
    grouped = frame.groupby(keys, sort=True, dropna=False)
    if uc.task == "binary":
        caught = frame[decision] & (frame[label] == 1)
        counts = (
            frame.assign(_caught=caught)
            .groupby(keys, sort=True, dropna=False)
            .agg(
                n_transactions=(SCORE, "size"),
                n_fraud=(label, "sum"),
                n_flagged=(decision, "sum"),
                n_caught=("_caught", "sum"),
            )
        )
        out = counts.join(metrics).reset_index()
        out["fraud_catch_rate"] = out["n_caught"] / out["n_fraud"].where(out["n_fraud"] > 0)
        out["flagged_precision"] = out["n_caught"] / out["n_flagged"].where(out["n_flagged"] > 0)
        ints = ("n_transactions", "n_fraud", "n_flagged", "n_caught")
    else:
        counts = grouped.agg(
            n_predictions=(SCORE, "size"),
            mean_prediction=(SCORE, "mean"),
            mean_label=(label, "mean"),
            n_flagged=(decision, "sum"),
        )
        out = counts.join(metrics).reset_index()
        ints = ("n_predictions", "n_flagged")
    for col in ints:
        out[col] = out[col].astype("int64")
    return out[list(columns)]


def _checked(outcomes: pd.DataFrame, task: str, decision: str, label: str) -> pd.DataFrame:
    """Typed outcomes; a label or score that cannot be measured fails naming its column."""
    y = outcomes[label]
    if task == "binary":
        bad = outcomes[~y.isin((0, 1))]
        if len(bad):
            raise ValueError(f"outcomes.{label}: labels must be 0/1, got {bad[label].iloc[0]}")
        y = y.astype("int8")
    else:
        y = pd.to_numeric(y, errors="coerce").astype("float64")
        if not np.isfinite(y.to_numpy()).all():
            raise ValueError(f"outcomes.{label}: labels must be finite numbers")
    frame = outcomes.assign(
        **{
            label: y,
            decision: outcomes[decision].astype(bool),
            SCORE: outcomes[SCORE].astype("float64"),
        }
    )
    if not np.isfinite(frame[SCORE].to_numpy()).all():
        raise ValueError(f"outcomes.{SCORE}: scores must be finite")
    return frame


def trailing_column(use_case: UseCase | str | None = None) -> str:
    """The column of the primary metric pooled over the trailing days
    (``trailing_average_precision``, ``trailing_mean_absolute_error``)."""
    from ml_platform.training.metrics import task_metrics

    return f"trailing_{task_metrics(_use_case(use_case)).primary.name}"


def trailing_primary_metric(
    outcomes: pd.DataFrame, window_days: int, *, use_case: UseCase | str | None = None
) -> pd.DataFrame:
    """Per (version, source, day): the primary metric pooled over the trailing
    ``window_days`` labelled days (:func:`trailing_column`) and how many days it pooled.

    The performance rule of the retraining policy reads the latest of these for the
    champion. Days are those present for the group (a day without predictions is skipped);
    a binary window without a positive is NaN (undefined).
    """
    from ml_platform.training.metrics import task_metrics

    if window_days < 1:
        raise ValueError(f"window_days: must be >= 1, got {window_days}")
    uc = _use_case(use_case)
    label, primary = uc.spec.label.column, task_metrics(uc).primary
    cols = [DAY, MODEL_VERSION, SOURCE, trailing_column(uc), "trailing_days"]
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
            y = pooled[label].to_numpy(dtype=np.float64)
            undefined = uc.task == "binary" and not y.sum()
            value = np.nan if undefined else primary.compute(y, pooled[SCORE].to_numpy())
            rows.append((day, version, source, value, len(window)))
    return pd.DataFrame(rows, columns=cols)


def trailing_average_precision(outcomes: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """The flagship's :func:`trailing_primary_metric` (its primary metric: average precision)."""
    return trailing_primary_metric(outcomes, window_days)


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
    label = _use_case(None).spec.label.column
    if rows.empty or rows[label].sum() == 0:
        return None
    return average_precision(rows[label].to_numpy(), rows[SCORE].to_numpy())


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
