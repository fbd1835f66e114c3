"""``make demo``: the whole platform end to end on embedded defaults, then a summary."""

from __future__ import annotations

import time

from ml_platform.runtime import ensure_dagster_home, quiet_telemetry
from ml_platform.settings import get_settings


def prepare() -> None:
    """Everything `dagster dev` and the demo need before definitions load."""
    quiet_telemetry()
    ensure_dagster_home()
    from ml_platform.defs.warehouse.project import prepare_dbt_manifest

    prepare_dbt_manifest()


def run_demo() -> int:
    s = get_settings()
    t0 = time.perf_counter()
    prepare()
    from ml_platform.definitions import defs
    from ml_platform.defs.run import run_job

    print(f"ml_platform demo: {s.start_date}..{s.end_date} ({s.n_days} days), data in {s.data_dir}")
    timings: dict[str, float] = {}
    for job_name in ("spine_job", "training_features_job"):
        t = time.perf_counter()
        run_job(defs, job_name, start=s.start_date, end=s.end_date, log_level="WARNING")
        timings[job_name] = time.perf_counter() - t
        print(f"  {job_name}: done in {timings[job_name]:.1f}s")
    # training (issue 4): train + register the challenger, then the promotion gate
    t = time.perf_counter()
    run_job(defs, "training_job", log_level="WARNING")
    print(f"  training_job: done in {time.perf_counter() - t:.1f}s")

    from ml_platform.summary import print_summary

    print_summary(s)
    from ml_platform.training.registry import champion_report

    print(champion_report())
    # serving (issue 5): batch predictions with the champion, then how to call the API
    from ml_platform.serving.demo import run_serving_step

    run_serving_step(defs, s)
    # monitoring (issue 6): labeled performance (dbt), drift report, skew, summary chart
    from ml_platform.monitoring.demo_step import run_monitoring_step

    run_monitoring_step(defs, s)
    logs = s.data_dir / "logs"
    print(f"  run output (dbt and MLflow log lines): {logs}/<job>.log; every event: make dev")
    print(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
