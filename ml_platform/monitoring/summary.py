"""The monitoring summary: the chart plus system figures, written under reports/.

Gathers what the other monitoring outputs stored (batch predictions and online answers per
day, drift history, labeled performance), the API's latency from the prediction log, the
BentoML ``/metrics`` text when the API answers, and run durations from the Dagster
instance when one is passed in.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.settings import Settings

SCORE_SAMPLE_DAYS = 7


def prediction_volume(settings: Settings) -> pd.DataFrame:
    """Rows per day of batch predictions and online answers (Parquet metadata only)."""
    import pyarrow.parquet as pq

    rows = []
    for table, source in (("batch_predictions", "batch"), ("online_predictions", "online")):
        for day in lake.list_partitions(settings.lake_dir, table):
            path = lake.partition_path(settings.lake_dir, table, day)
            rows.append((day, source, pq.ParquetFile(path).metadata.num_rows))
    return pd.DataFrame(rows, columns=["day", "source", "n"])


def recent_scores(settings: Settings, days: int = SCORE_SAMPLE_DAYS) -> np.ndarray:
    present = lake.list_partitions(settings.lake_dir, "batch_predictions")[-days:]
    if not present:
        return np.empty(0)
    frame = lake.read_partitions(settings.lake_dir, "batch_predictions", present)
    return frame["score"].to_numpy(dtype=float)


def read_performance(settings: Settings) -> pd.DataFrame:
    path = settings.lake_dir / "model_performance" / lake.FILE_NAME
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


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


def build_summary(settings: Settings, *, instance: Any | None = None) -> dict[str, Any]:
    """Write reports/monitoring_summary.png and .json; return the summary dict."""
    from ml_platform.monitoring import daily
    from ml_platform.monitoring.summary_chart import plot_summary
    from ml_platform.monitoring.system import latency_stats, run_duration_stats, run_durations

    out = settings.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    volume = prediction_volume(settings)
    scores = recent_scores(settings)
    drift = daily.read_drift_history(settings)
    performance = read_performance(settings)
    png = plot_summary(
        out / "monitoring_summary.png",
        volume=volume,
        scores=scores,
        drift=drift,
        performance=performance,
        drift_threshold=settings.drift_share_threshold,
    )
    api = latency_stats(daily.read_log(settings))
    api["prometheus"] = scrape_metrics(settings)
    durations: dict = {}
    if instance is not None:
        durations = run_duration_stats(run_durations(list(instance.get_run_records(limit=500))))
    latest_ap = None
    if len(performance):
        batch = performance[performance["source"] == "batch"].dropna(subset=["average_precision"])
        if len(batch):
            latest_ap = float(batch.sort_values("tx_date")["average_precision"].iloc[-1])
    summary = {
        "chart": str(png),
        "json": str(out / "monitoring_summary.json"),
        "n_predictions": int(volume["n"].sum()) if len(volume) else 0,
        "days_with_predictions": int(volume["day"].nunique()) if len(volume) else 0,
        "latest_drift_share": float(drift["drift_share"].iloc[-1]) if len(drift) else None,
        "latest_drift_day": str(drift["day"].iloc[-1]) if len(drift) else None,
        "latest_average_precision": latest_ap,
        "api": api,
        "run_durations": durations,
    }
    Path(summary["json"]).write_text(json.dumps(summary, indent=2, default=str))
    return summary
