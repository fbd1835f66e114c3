"""The monitoring step of ``make demo``: labeled performance, drift, skew and the summary."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from ml_platform.settings import Settings

DRIFT_DAYS = 3  # drift reports for the last days only: each full Evidently report takes ~2 s


def run_monitoring_step(defs: Any, settings: Settings, use_case: Any) -> dict[str, Any]:
    """Run the use case's monitoring jobs through Dagster and print where the reports are."""
    from ml_platform.data import lake
    from ml_platform.defs import names
    from ml_platform.defs.run import run_job
    from ml_platform.monitoring import daily

    s = settings
    if not lake.list_partitions(s.lake_dir, "batch_predictions"):
        print("  monitoring: no batch predictions (no champion?), skipped")
        return {}
    labeled_job = use_case.qualified(names.LABELED_PERFORMANCE_JOB)
    monitoring_job = use_case.qualified(names.MONITORING_JOB)
    t = time.perf_counter()
    run_job(defs, labeled_job, start=s.start_date, end=s.end_date, log_level="WARNING")
    t1 = time.perf_counter() - t
    start = max(s.start_date, s.end_date - timedelta(days=DRIFT_DAYS - 1))
    t = time.perf_counter()
    run_job(defs, monitoring_job, start=start, end=s.end_date, log_level="WARNING")
    t2 = time.perf_counter() - t
    drift = daily.read_drift_history(s)
    last = lake.read_partitions(s.lake_dir, "drift_report", [s.end_date], missing_ok=True)
    html = str(last["html_path"].iloc[0]) if len(last) else "-"
    summary_png = s.reports_dir / "monitoring_summary.png"
    print(f"  {labeled_job}: {t1:.1f}s; {monitoring_job} ({start}..{s.end_date}): {t2:.1f}s")
    if len(drift):
        row = drift.iloc[-1]
        drifted = last.loc[(last["kind"] == "feature") & last["drifted"], "column"].tolist()
        print(
            f"  drift {row['day']}: share {row['drift_share']:.2f} "
            f"(threshold {s.drift_share_threshold}); drifted: {', '.join(drifted) or 'none'}; "
            f"prediction drift score {row['prediction_drift_score']:.3f}"
        )
    group = use_case.qualified(names.MONITORING)
    print(f"\nMonitoring (Dagster group '{group}'; sensors + daily schedule run under make dev):")
    print(f"  drift report:        {html}")
    print(f"  monitoring summary:  {summary_png}")
    print(f"  summary figures:     {s.reports_dir / 'monitoring_summary.json'}")
    print("  retraining backtest: uv run ml-platform backtest-retraining")
    return {"drift_report": html, "summary": str(summary_png)}
