"""The monitoring step of ``make demo``: labeled performance, drift, skew and the summary."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_platform.settings import Settings
    from ml_platform.use_cases import UseCase

DRIFT_DAYS = 1  # the last day's drift report only: each full Evidently report takes seconds


def run_monitoring_step(
    defs: Any, settings: Settings, use_case: UseCase, start: date, end: date
) -> dict[str, Any]:
    """Run the use case's monitoring jobs over ``start..end`` through Dagster and print where
    the reports are."""
    from ml_platform.data import lake
    from ml_platform.defs import names
    from ml_platform.defs.context import StageContext
    from ml_platform.defs.run import run_job
    from ml_platform.monitoring import daily
    from ml_platform.monitoring.monitored import Monitored

    s = settings
    m = Monitored.of(use_case)
    if not lake.list_partitions(s.lake_dir, m.lake(names.BATCH_PREDICTIONS)):
        print("  monitoring: no batch predictions (no champion?), skipped")
        return {}
    labeled_job = use_case.qualified(names.LABELED_PERFORMANCE_JOB)
    monitoring_job = use_case.qualified(names.MONITORING_JOB)
    t = time.perf_counter()
    run_job(defs, labeled_job, start=start, end=end, log_level="WARNING")
    t1 = time.perf_counter() - t
    first = max(start, end - timedelta(days=DRIFT_DAYS - 1))
    t = time.perf_counter()
    run_job(defs, monitoring_job, start=first, end=end, log_level="WARNING")
    t2 = time.perf_counter() - t
    drift = daily.read_drift_history(s, use_case)
    last = lake.read_partitions(s.lake_dir, m.lake(names.DRIFT_REPORT), [end], missing_ok=True)
    html = str(last["html_path"].iloc[0]) if len(last) else "-"
    reports = m.reports_dir(s)
    summary_png = reports / "monitoring_summary.png"
    threshold = StageContext(use_case, s).own.drift_share_threshold
    print(f"  {labeled_job}: {t1:.1f}s; {monitoring_job} ({first}..{end}): {t2:.1f}s")
    if len(drift):
        row = drift.iloc[-1]
        drifted = last.loc[(last["kind"] == "feature") & last["drifted"], "column"].tolist()
        print(
            f"  drift {row['day']}: share {row['drift_share']:.2f} "
            f"(threshold {threshold}); drifted: {', '.join(drifted) or 'none'}; "
            f"prediction drift score {row['prediction_drift_score']:.3f}"
        )
    group = use_case.qualified(names.MONITORING)
    option = "" if use_case.is_flagship else f" --use-case {use_case.name}"
    print(f"\nMonitoring (Dagster group '{group}'; sensors + daily schedule run under make dev):")
    print(f"  drift report:        {html}")
    print(f"  monitoring summary:  {summary_png}")
    print(f"  summary figures:     {reports / 'monitoring_summary.json'}")
    print(f"  retraining backtest: uv run ml-platform backtest-retraining{option}")
    return {"drift_report": html, "summary": str(summary_png)}
