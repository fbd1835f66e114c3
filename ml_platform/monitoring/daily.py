"""One day of monitoring from the lake: what the Dagster assets (and the benchmark) call.

Each function reads the Parquet lake (and the API's prediction log) for one day and hands
the frames to the pure modules (:mod:`drift`, :mod:`skew`, :mod:`performance`). The
champion's drift reference is its training window, read back from the lake and scored by
the champion itself, so feature drift and prediction drift share one reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.data.contract import REQUEST_COLUMNS, TRANSACTION_ID, TX_DATETIME, TX_FRAUD
from ml_platform.monitoring import performance as perf
from ml_platform.monitoring.drift import DriftResult, compute_drift
from ml_platform.monitoring.skew import SkewResult, serving_skew
from ml_platform.settings import Settings

FEATURES = "transaction_features"
TRANSACTIONS = "validated_transactions"
BATCH = "batch_predictions"
ONLINE = "online_predictions"

#: Columns of the ``online_predictions`` lake table (one row per answered request).
ONLINE_COLUMNS: dict[str, str] = {
    TRANSACTION_ID: "int64",
    TX_DATETIME: "datetime64[ns]",
    "customer_id": "int64",
    "terminal_id": "int64",
    "tx_amount": "float64",
    "score": "float64",
    "is_fraud": "bool",
    "threshold": "float64",
    "model_name": "string",
    "model_version": "string",
    "feature_version": "string",
    "latency_ms": "float64",
    "logged_at": "datetime64[ns]",
    "request_id": "string",
}


@dataclass
class Reference:
    """The champion's training reference: a feature sample and the champion's scores on it."""

    model_version: str
    train_window: str
    frame: pd.DataFrame  # FEATURE_COLUMNS + score


def _days(window: str) -> list[date]:
    """``"YYYY-MM-DD..YYYY-MM-DD"`` -> the days of that inclusive window."""
    try:
        start, end = (date.fromisoformat(p) for p in window.split(".."))
    except ValueError as exc:
        raise ValueError(
            f"train_window: expected 'YYYY-MM-DD..YYYY-MM-DD', got {window!r}"
        ) from exc
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def load_champion(model_name: str) -> tuple[Any, Any]:
    """(native model, ModelInfo) of ``model_name@champion``; LookupError when there is none."""
    from ml_platform.training import registry

    return registry.load_native_model(registry.CHAMPION, model_name=model_name)


def champion_reference(
    settings: Settings, model: Any, info: Any, feature_columns: list[str]
) -> Reference:
    """The champion's training-window features from the lake, sampled, with its scores."""
    window = info.tags.get("train_window", "")
    if not window:
        raise ValueError(f"model version {info.version}: no train_window tag to build a reference")
    feats = lake.read_partitions(settings.lake_dir, FEATURES, _days(window), missing_ok=True)
    if feats.empty:
        raise FileNotFoundError(
            f"{FEATURES}: no partition of the champion's training window {window} in the lake"
        )
    from ml_platform.monitoring.drift import sample_reference

    frame = sample_reference(feats[feature_columns], settings.drift_reference_max_rows)
    frame = frame.reset_index(drop=True)
    frame["score"] = model.score(frame[feature_columns].to_numpy(dtype=np.float64))
    return Reference(str(info.version), window, frame)


def current_day(settings: Settings, day: date | str, feature_columns: list[str]) -> pd.DataFrame:
    """The day's features with the batch score the champion gave them.

    A day without batch predictions (scored before any champion existed) still gets its
    feature drift; the prediction drift is then left out (no ``score`` column).
    """
    feats = lake.read_partitions(settings.lake_dir, FEATURES, [day])
    if feats.empty:
        raise ValueError(f"{FEATURES}: partition {day} is empty, nothing to compare")
    preds = lake.read_partitions(settings.lake_dir, BATCH, [day], missing_ok=True)
    if preds.empty:
        return feats[[TRANSACTION_ID, *feature_columns]].assign(model_version="")
    cur = feats[[TRANSACTION_ID, *feature_columns]].merge(
        preds[[TRANSACTION_ID, "score", "model_version"]], on=TRANSACTION_ID, how="inner"
    )
    if cur.empty:
        raise ValueError(f"{day}: no transaction has both features and a batch prediction")
    return cur


def drift_for_day(
    settings: Settings,
    day: date | str,
    reference: Reference,
    feature_columns: list[str],
    *,
    save_html: bool = True,
) -> DriftResult:
    """Evidently drift of one day against the champion's reference (HTML under reports)."""
    cur = current_day(settings, day, feature_columns)
    html = settings.reports_dir / "drift" / f"drift_report_{_iso(day)}.html" if save_html else None
    result = compute_drift(
        reference.frame,
        cur,
        feature_columns,
        html_path=html,
        max_reference_rows=settings.drift_reference_max_rows,
    )
    result.extra.update(
        {
            "day": _iso(day),
            "reference_model_version": reference.model_version,
            "reference_window": reference.train_window,
            "scored_by": sorted(cur["model_version"].astype(str).unique().tolist()),
        }
    )
    return result


def drift_frame(result: DriftResult, day: date | str) -> pd.DataFrame:
    """The drift result as the stored table: one row per column, plus day and reference."""
    frame = result.to_frame()
    frame.insert(0, "day", _iso(day))
    frame["reference_model_version"] = result.extra.get("reference_model_version")
    frame["html_path"] = result.html_path
    return frame


def read_drift_history(settings: Settings) -> pd.DataFrame:
    """Drift share per day from the stored ``drift_report`` partitions."""
    days = lake.list_partitions(settings.lake_dir, "drift_report")
    if not days:
        return pd.DataFrame(columns=["day", "drift_share", "prediction_drift_score"])
    frame = lake.read_partitions(settings.lake_dir, "drift_report", days)
    feats = frame[frame["kind"] == "feature"]
    share = feats.groupby("day")["drifted"].mean().rename("drift_share")
    pred = frame[frame["kind"] == "prediction"].set_index("day")["score"]
    out = share.to_frame().join(pred.rename("prediction_drift_score")).reset_index()
    return out.sort_values("day", ignore_index=True)


def online_for_day(
    settings: Settings, day: date | str, log: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The API's answers (champion role) for transactions of ``day``, typed for the lake."""
    if log is None:
        log = read_log(settings)
    if log.empty:
        return _typed(pd.DataFrame(columns=list(ONLINE_COLUMNS)))
    rows = log[(log["role"] == "champion") & (log[TX_DATETIME].dt.date == _as_date(day))]
    rows = rows.sort_values("logged_at").drop_duplicates(TRANSACTION_ID, keep="last")
    return _typed(rows[list(ONLINE_COLUMNS)].reset_index(drop=True))


def read_log(settings: Settings, expand_features: bool = False) -> pd.DataFrame:
    """The serving stage's prediction log (empty when the API never ran)."""
    from ml_platform.serving.prediction_log import prediction_log_path, read_prediction_log

    return read_prediction_log(prediction_log_path(settings), expand_features=expand_features)


def skew_for_day(
    settings: Settings,
    day: date | str,
    feature_columns: list[str],
    log: pd.DataFrame | None = None,
) -> SkewResult:
    """Serving skew for the transactions of ``day`` the API answered (see skew.py).

    ``log`` is the prediction log read with ``expand_features=False`` (JSON features).
    """
    from ml_platform.features import horizon_days
    from ml_platform.monitoring.skew import split_log

    if log is None:
        log = read_log(settings, expand_features=False)
    d = _as_date(day)
    logged = log[(log["role"] == "champion") & (log[TX_DATETIME].dt.date == d)] if len(log) else log
    logged = logged.sort_values("logged_at").drop_duplicates(TRANSACTION_ID, keep="last")
    requests, feats = split_log(logged, feature_columns)
    horizon = horizon_days(settings.label_delay_days)
    before = [d - timedelta(days=i) for i in range(horizon, 0, -1)]
    history = pd.DataFrame()
    if len(requests):
        history = lake.read_partitions(settings.lake_dir, TRANSACTIONS, before, missing_ok=True)
        if not history.empty:
            history = history[[*REQUEST_COLUMNS, TX_FRAUD]]
    return serving_skew(
        requests,
        feats,
        history,
        feature_columns,
        label_delay_days=settings.label_delay_days,
        tolerance=settings.skew_tolerance,
    )


def outcomes_from_lake(settings: Settings, days: list[date]) -> pd.DataFrame:
    """Batch predictions joined with labels in Python (what ``fct_prediction_outcomes`` holds
    for the batch source); used where the warehouse is not at hand (benchmark)."""
    preds = lake.read_partitions(settings.lake_dir, BATCH, days, missing_ok=True)
    tx = lake.read_partitions(settings.lake_dir, TRANSACTIONS, days, missing_ok=True)
    if preds.empty or tx.empty:
        return pd.DataFrame(columns=list(perf.OUTCOME_COLUMNS))
    out = preds.merge(tx[[TRANSACTION_ID, TX_FRAUD]], on=TRANSACTION_ID, how="inner")
    out[perf.DAY] = out[TX_DATETIME].dt.date
    out[perf.SOURCE] = "batch"
    return out[list(perf.OUTCOME_COLUMNS)]


def outcomes_from_warehouse(settings: Settings) -> pd.DataFrame:
    """Matured rows of ``fct_prediction_outcomes`` (short-lived read-only DuckDB connection)."""
    from ml_platform import warehouse

    tables = warehouse.existing_tables(settings.warehouse_path)
    if "fct_prediction_outcomes" not in tables or "stg_transactions" not in tables:
        return pd.DataFrame(columns=list(perf.OUTCOME_COLUMNS))
    cols = ", ".join(f'"{c}"' for c in perf.OUTCOME_COLUMNS)
    return warehouse.query(
        settings.warehouse_path,
        f"select {cols} from fct_prediction_outcomes "
        "where label_available_on <= (select max(tx_date) from stg_transactions)",
    )


def read_mart(settings: Settings) -> pd.DataFrame:
    from ml_platform import warehouse

    if "mart_model_performance_daily" not in warehouse.existing_tables(settings.warehouse_path):
        return pd.DataFrame()
    return warehouse.query(settings.warehouse_path, "select * from mart_model_performance_daily")


def model_performance_table(
    outcomes: pd.DataFrame, mart: pd.DataFrame, window_days: int
) -> pd.DataFrame:
    """Per (day, version, source): Python metrics + trailing pooled AP (+ SQL AUC check)."""
    table = perf.daily_performance(outcomes)
    trailing = perf.trailing_average_precision(outcomes, window_days)
    if len(table):
        table[perf.DAY] = pd.to_datetime(table[perf.DAY]).dt.date
        table[perf.MODEL_VERSION] = table[perf.MODEL_VERSION].astype(str)
        trailing[perf.MODEL_VERSION] = trailing[perf.MODEL_VERSION].astype(str)
        table = table.merge(trailing, on=list(perf.GROUP_KEYS), how="left")
    if len(table) and len(mart) and "roc_auc" in mart.columns:
        sql = mart[[perf.DAY, perf.MODEL_VERSION, perf.SOURCE, "roc_auc"]].rename(
            columns={"roc_auc": "roc_auc_sql"}
        )
        sql[perf.DAY] = pd.to_datetime(sql[perf.DAY]).dt.date
        sql[perf.MODEL_VERSION] = sql[perf.MODEL_VERSION].astype(str)
        table = table.merge(sql, on=list(perf.GROUP_KEYS), how="left")
    return table


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(ONLINE_COLUMNS)


def _as_date(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(day)


def _iso(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


def html_path_exists(path: str | None) -> bool:
    return bool(path) and Path(path).exists()
