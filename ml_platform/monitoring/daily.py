"""One day of monitoring from the lake: what the Dagster assets (and the benchmark) call.

Each function reads the Parquet lake (and the API's prediction log) for one day and hands
the frames to the pure modules (:mod:`drift`, :mod:`skew`, :mod:`performance`). The
champion's drift reference is its training window, read back from the lake and scored by
the champion itself, so feature drift and prediction drift share one reference. Every
function reads one use case's tables and columns (``use_case``, default: the flagship)
through :class:`~ml_platform.monitoring.monitored.Monitored`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.defs import names
from ml_platform.monitoring import performance as perf
from ml_platform.monitoring.drift import DriftResult, compute_drift
from ml_platform.monitoring.monitored import Monitored
from ml_platform.monitoring.skew import SkewResult, serving_skew
from ml_platform.settings import Settings

if TYPE_CHECKING:
    from ml_platform.use_cases import UseCase


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
    settings: Settings,
    model: Any,
    info: Any,
    feature_columns: list[str],
    use_case: UseCase | str | None = None,
) -> Reference:
    """The champion's training-window features from the lake, sampled, with its scores."""
    table = Monitored.of(use_case).lake(names.EVENT_FEATURES)
    window = info.tags.get("train_window", "")
    if not window:
        raise ValueError(f"model version {info.version}: no train_window tag to build a reference")
    feats = lake.read_partitions(settings.lake_dir, table, _days(window), missing_ok=True)
    if feats.empty:
        raise FileNotFoundError(
            f"{table}: no partition of the champion's training window {window} in the lake"
        )
    from ml_platform.monitoring.drift import sample_reference

    frame = sample_reference(feats[feature_columns], settings.drift_reference_max_rows)
    frame = frame.reset_index(drop=True)
    frame["score"] = model.score(frame[feature_columns].to_numpy(dtype=np.float64))
    return Reference(str(info.version), window, frame)


def current_day(
    settings: Settings,
    day: date | str,
    feature_columns: list[str],
    use_case: UseCase | str | None = None,
) -> pd.DataFrame:
    """The day's features with the batch score the champion gave them.

    A day without batch predictions (scored before any champion existed) still gets its
    feature drift; the prediction drift is then left out (no ``score`` column).
    """
    m = Monitored.of(use_case)
    table, key = m.lake(names.EVENT_FEATURES), m.event_id
    feats = lake.read_partitions(settings.lake_dir, table, [day])
    if feats.empty:
        raise ValueError(f"{table}: partition {day} is empty, nothing to compare")
    preds = lake.read_partitions(
        settings.lake_dir, m.lake(names.BATCH_PREDICTIONS), [day], missing_ok=True
    )
    if preds.empty:
        return feats[[key, *feature_columns]].assign(model_version="")
    cur = feats[[key, *feature_columns]].merge(
        preds[[key, "score", "model_version"]], on=key, how="inner"
    )
    if cur.empty:
        raise ValueError(f"{day}: no event has both features and a batch prediction")
    return cur


def drift_for_day(
    settings: Settings,
    day: date | str,
    reference: Reference,
    feature_columns: list[str],
    *,
    save_html: bool = True,
    use_case: UseCase | str | None = None,
) -> DriftResult:
    """Evidently drift of one day against the champion's reference (HTML under reports)."""
    m = Monitored.of(use_case)
    cur = current_day(settings, day, feature_columns, m.use_case)
    reports = m.reports_dir(settings)
    html = reports / "drift" / f"drift_report_{_iso(day)}.html" if save_html else None
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


def read_drift_history(settings: Settings, use_case: UseCase | str | None = None) -> pd.DataFrame:
    """Drift share per day from the stored ``drift_report`` partitions."""
    table = Monitored.of(use_case).lake(names.DRIFT_REPORT)
    days = lake.list_partitions(settings.lake_dir, table)
    if not days:
        return pd.DataFrame(columns=["day", "drift_share", "prediction_drift_score"])
    frame = lake.read_partitions(settings.lake_dir, table, days)
    feats = frame[frame["kind"] == "feature"]
    share = feats.groupby("day")["drifted"].mean().rename("drift_share")
    pred = frame[frame["kind"] == "prediction"].set_index("day")["score"]
    out = share.to_frame().join(pred.rename("prediction_drift_score")).reset_index()
    return out.sort_values("day", ignore_index=True)


def online_for_day(
    settings: Settings,
    day: date | str,
    log: pd.DataFrame | None = None,
    use_case: UseCase | str | None = None,
) -> pd.DataFrame:
    """The API's answers (champion role) for the events of ``day``, typed for the lake."""
    m = Monitored.of(use_case)
    columns = m.online_columns
    if log is None:
        log = read_log(settings, use_case=m.use_case)
    if log.empty:
        return pd.DataFrame(columns=list(columns)).astype(columns)
    rows = _champion_rows(log, m, day)
    return rows[list(columns)].reset_index(drop=True).astype(columns)


def _champion_rows(log: pd.DataFrame, m: Monitored, day: date | str) -> pd.DataFrame:
    """The champion's answers for events of ``day``, the newest per event."""
    rows = log[(log["role"] == "champion") & (log[m.event_time].dt.date == _as_date(day))]
    return rows.sort_values("logged_at").drop_duplicates(m.event_id, keep="last")


def read_log(
    settings: Settings, expand_features: bool = False, use_case: UseCase | str | None = None
) -> pd.DataFrame:
    """A use case's prediction log (empty when its API never ran)."""
    from ml_platform.serving.prediction_log import prediction_log_path, read_prediction_log

    m = Monitored.of(use_case)
    return read_prediction_log(
        prediction_log_path(settings, m.use_case),
        expand_features=expand_features,
        layout=m.log_layout,
    )


def skew_for_day(
    settings: Settings,
    day: date | str,
    feature_columns: list[str],
    log: pd.DataFrame | None = None,
    use_case: UseCase | str | None = None,
    *,
    label_delay_days: int | None = None,
    tolerance: float | None = None,
) -> SkewResult:
    """Serving skew for the events of ``day`` the API answered (see skew.py).

    ``log`` is the prediction log read with ``expand_features=False`` (JSON features).
    The history is the validated events of the feature set's look-back before the day (and
    each side table's rows over its own look-back and the day). ``label_delay_days`` and
    ``tolerance`` default to the platform's settings.
    """
    import math

    from ml_platform.features import feature_set, horizon_days
    from ml_platform.features.definitions import DAY_NS
    from ml_platform.monitoring.skew import split_log

    m = Monitored.of(use_case)
    delay = settings.label_delay_days if label_delay_days is None else label_delay_days
    if log is None:
        log = read_log(settings, expand_features=False, use_case=m.use_case)
    d = _as_date(day)
    logged = _champion_rows(log, m, d) if len(log) else log
    requests, feats = split_log(logged, feature_columns, use_case=m.use_case)
    fs = feature_set(m.use_case)
    history, sides = pd.DataFrame(), {}
    if len(requests):
        horizon = horizon_days(delay, m.use_case)
        before = [d - timedelta(days=i) for i in range(horizon, 0, -1)]
        history = lake.read_partitions(
            settings.lake_dir, m.lake(names.VALIDATED_EVENTS), before, missing_ok=True
        )
        for table in fs.side_tables:
            back = math.ceil(fs.side_horizon_ns(table.name) / DAY_NS)
            days = [d - timedelta(days=i) for i in range(back, -1, -1)]
            sides[table.name] = lake.read_partitions(
                settings.lake_dir, m.lake(table.name), days, missing_ok=True
            )
    return serving_skew(
        requests,
        feats,
        history,
        feature_columns,
        label_delay_days=delay,
        tolerance=settings.skew_tolerance if tolerance is None else tolerance,
        use_case=m.use_case,
        side_tables=sides or None,
    )


def outcomes_from_lake(
    settings: Settings, days: list[date], use_case: UseCase | str | None = None
) -> pd.DataFrame:
    """Batch predictions joined with labels in Python (what ``fct_prediction_outcomes`` holds
    for the batch source); used where the warehouse is not at hand (benchmark)."""
    m = Monitored.of(use_case)
    columns = perf.outcome_columns(m.use_case)
    preds = lake.read_partitions(
        settings.lake_dir, m.lake(names.BATCH_PREDICTIONS), days, missing_ok=True
    )
    events = lake.read_partitions(
        settings.lake_dir, m.lake(names.VALIDATED_EVENTS), days, missing_ok=True
    )
    if preds.empty or events.empty:
        return pd.DataFrame(columns=list(columns))
    carried = [c for c in columns if c in events.columns and c not in preds.columns]
    out = preds.merge(events[[m.event_id, *carried]], on=m.event_id, how="inner")
    out[perf.DAY] = out[m.event_time].dt.date
    out[perf.SOURCE] = "batch"
    return out[list(columns)]


def outcomes_from_warehouse(
    settings: Settings, use_case: UseCase | str | None = None
) -> pd.DataFrame:
    """Matured rows of the use case's prediction outcomes (short-lived read-only DuckDB
    connection), as of the newest day of its staging model."""
    from ml_platform import warehouse

    m = Monitored.of(use_case)
    columns = perf.outcome_columns(m.use_case)
    outcomes, staging = m.warehouse(names.DBT_PREDICTION_OUTCOMES), m.warehouse(names.DBT_STAGING)
    tables = warehouse.existing_tables(settings.warehouse_path)
    if outcomes not in tables or staging not in tables:
        return pd.DataFrame(columns=list(columns))
    cols = ", ".join(f'"{c}"' for c in columns)
    return warehouse.query(
        settings.warehouse_path,
        f'select {cols} from "{outcomes}" '
        f'where label_available_on <= (select max("{perf.DAY}") from "{staging}")',
    )


def read_mart(settings: Settings, use_case: UseCase | str | None = None) -> pd.DataFrame:
    """The use case's labelled performance mart (empty before dbt built it)."""
    from ml_platform import warehouse

    mart = Monitored.of(use_case).warehouse(names.DBT_PERFORMANCE_MART)
    if mart not in warehouse.existing_tables(settings.warehouse_path):
        return pd.DataFrame()
    return warehouse.query(settings.warehouse_path, f'select * from "{mart}"')


def model_performance_table(
    outcomes: pd.DataFrame,
    mart: pd.DataFrame,
    window_days: int,
    use_case: UseCase | str | None = None,
) -> pd.DataFrame:
    """Per (day, version, source): Python metrics + the primary metric pooled over the
    trailing days (+ the SQL mart's own figures as a cross-check: ROC AUC of a binary task,
    MAE of a regression, suffixed ``_sql``)."""
    m = Monitored.of(use_case)
    table = perf.daily_performance(outcomes, use_case=m.use_case)
    trailing = perf.trailing_primary_metric(outcomes, window_days, use_case=m.use_case)
    if len(table):
        table[perf.DAY] = pd.to_datetime(table[perf.DAY]).dt.date
        table[perf.MODEL_VERSION] = table[perf.MODEL_VERSION].astype(str)
        trailing[perf.MODEL_VERSION] = trailing[perf.MODEL_VERSION].astype(str)
        table = table.merge(trailing, on=list(perf.GROUP_KEYS), how="left")
    checked = perf.SQL_CROSS_CHECK[m.task]
    if len(table) and len(mart) and checked in mart.columns:
        sql = mart[[perf.DAY, perf.MODEL_VERSION, perf.SOURCE, checked]].rename(
            columns={checked: f"{checked}_sql"}
        )
        sql[perf.DAY] = pd.to_datetime(sql[perf.DAY]).dt.date
        sql[perf.MODEL_VERSION] = sql[perf.MODEL_VERSION].astype(str)
        table = table.merge(sql, on=list(perf.GROUP_KEYS), how="left")
    return table


def _as_date(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(day)


def _iso(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()


def html_path_exists(path: str | None) -> bool:
    return bool(path) and Path(path).exists()
