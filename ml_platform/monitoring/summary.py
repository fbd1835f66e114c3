"""The monitoring summary of one use case: the chart plus system figures, under reports/.

Gathers what the other monitoring outputs stored (batch predictions and online answers per
day, drift history, labeled performance), the API's latency from the prediction log, the
BentoML ``/metrics`` text when the API answers, and run durations from the Dagster
instance when one is passed in. The flagship's files are ``reports/monitoring_summary.*``,
another use case's ``reports/<name>/monitoring_summary.*``.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.defs import names
from ml_platform.monitoring.monitored import Monitored
from ml_platform.settings import Settings

if TYPE_CHECKING:
    from ml_platform.use_cases import UseCase

SCORE_SAMPLE_DAYS = 7


def prediction_volume(settings: Settings, use_case: UseCase | str | None = None) -> pd.DataFrame:
    """Rows per day of batch predictions and online answers (Parquet metadata only)."""
    import pyarrow.parquet as pq

    m = Monitored.of(use_case)
    rows = []
    for base, source in ((names.BATCH_PREDICTIONS, "batch"), (names.ONLINE_PREDICTIONS, "online")):
        table = m.lake(base)
        for day in lake.list_partitions(settings.lake_dir, table):
            path = lake.partition_path(settings.lake_dir, table, day)
            rows.append((day, source, pq.ParquetFile(path).metadata.num_rows))
    return pd.DataFrame(rows, columns=["day", "source", "n"])


def recent_scores(
    settings: Settings, days: int = SCORE_SAMPLE_DAYS, use_case: UseCase | str | None = None
) -> np.ndarray:
    table = Monitored.of(use_case).lake(names.BATCH_PREDICTIONS)
    present = lake.list_partitions(settings.lake_dir, table)[-days:]
    if not present:
        return np.empty(0)
    frame = lake.read_partitions(settings.lake_dir, table, present)
    return frame["score"].to_numpy(dtype=float)


def read_performance(settings: Settings, use_case: UseCase | str | None = None) -> pd.DataFrame:
    """The stored ``model_performance`` table of a use case (empty before its first run)."""
    table = Monitored.of(use_case).lake(names.MODEL_PERFORMANCE)
    path = settings.lake_dir / table / lake.FILE_NAME
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def latest_primary(performance: pd.DataFrame, metric: str) -> float | None:
    """The newest batch day's value of ``metric`` (None when none is measured yet)."""
    if not len(performance) or metric not in performance.columns:
        return None
    batch = performance[performance["source"] == "batch"].dropna(subset=[metric])
    if not len(batch):
        return None
    return float(batch.sort_values("tx_date")[metric].iloc[-1])


def scrape_metrics(settings: Settings, timeout: float = 1.0) -> dict[str, Any] | None:
    """BentoML's Prometheus text, parsed; None when the API is not running."""
    from ml_platform.monitoring.system import bentoml_request_metrics

    url = f"http://{settings.serving_host}:{settings.serving_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (local URL)
            text = resp.read().decode()
    except OSError:
        return None
    return {"url": url, "endpoints": bentoml_request_metrics(text)}


def build_summary(
    settings: Settings,
    *,
    instance: Any | None = None,
    use_case: UseCase | str | None = None,
    drift_threshold: float | None = None,
) -> dict[str, Any]:
    """Write the use case's monitoring_summary.png and .json; return the summary dict.

    ``latest_<primary metric>`` is the newest batch day's primary metric, with its direction
    (``primary_direction``: ``maximize`` or ``minimize``); the flagship's is
    ``latest_average_precision``. ``drift_threshold`` defaults to the platform's setting.
    """
    from ml_platform.monitoring import daily
    from ml_platform.monitoring.summary_chart import plot_summary
    from ml_platform.monitoring.system import latency_stats, run_duration_stats, run_durations

    m = Monitored.of(use_case)
    primary = m.primary
    out = m.reports_dir(settings)
    out.mkdir(parents=True, exist_ok=True)
    volume = prediction_volume(settings, m.use_case)
    scores = recent_scores(settings, use_case=m.use_case)
    drift = daily.read_drift_history(settings, m.use_case)
    performance = read_performance(settings, m.use_case)
    threshold = settings.drift_share_threshold if drift_threshold is None else drift_threshold
    binary = m.task == "binary"
    png = plot_summary(
        out / "monitoring_summary.png",
        volume=volume,
        scores=scores,
        drift=drift,
        performance=performance,
        drift_threshold=threshold,
        title=f"ml_platform monitoring: {m.name}",
        metric=primary.name,
        metric_label=primary.long,
        score_label=f"{m.name} probability" if binary else f"predicted {m.label}",
        probability=binary,
    )
    api = latency_stats(daily.read_log(settings, use_case=m.use_case))
    api["prometheus"] = scrape_metrics(settings) if m.use_case.is_flagship else None
    durations: dict = {}
    if instance is not None:
        durations = run_duration_stats(run_durations(list(instance.get_run_records(limit=500))))
    summary = {
        "chart": str(png),
        "json": str(out / "monitoring_summary.json"),
        "n_predictions": int(volume["n"].sum()) if len(volume) else 0,
        "days_with_predictions": int(volume["day"].nunique()) if len(volume) else 0,
        "latest_drift_share": float(drift["drift_share"].iloc[-1]) if len(drift) else None,
        "latest_drift_day": str(drift["day"].iloc[-1]) if len(drift) else None,
        f"latest_{primary.name}": latest_primary(performance, primary.name),
        "primary_metric": primary.name,
        "primary_direction": primary.direction,
        "api": api,
        "run_durations": durations,
    }
    Path(summary["json"]).write_text(json.dumps(summary, indent=2, default=str))
    return summary
