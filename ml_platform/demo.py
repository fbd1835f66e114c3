"""``make demo``: the whole platform end to end on embedded defaults, then a summary.

Each stage prints a line when it starts and one when it is done: the first run takes
minutes, and a console that stays silent meanwhile looks hung.
"""

from __future__ import annotations

import time

from ml_platform.runtime import ensure_dagster_home, quiet_telemetry
from ml_platform.settings import Settings, get_settings


def prepare() -> None:
    """Everything `dagster dev` and the demo need before definitions load."""
    quiet_telemetry()
    ensure_dagster_home()
    from ml_platform.defs.warehouse.project import prepare_dbt_manifest

    prepare_dbt_manifest()


def stage_started(name: str, what: str) -> float:
    """Print that a stage starts (what it does) and return its start time."""
    print(f"  {name}: started ({what})", flush=True)
    return time.perf_counter()


def stage_done(name: str, started: float, detail: str = "") -> None:
    print(f"  {name}: done in {time.perf_counter() - started:.1f}s{detail}", flush=True)


def store_summary(settings: Settings) -> str:
    """The online store's kind, watermark and entity counts, as one line."""
    from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID
    from ml_platform.features.stores import open_store

    with open_store(settings) as store:
        d = store.describe()
    n = d["entities"]
    return (
        f"online store ({d['kind']}): watermark {d['watermark'] or '- (empty)'}, "
        f"{n[CUSTOMER_ID]:,} customers, {n[TERMINAL_ID]:,} terminals"
    )


#: The use case the demo runs end to end.
DEMO_USE_CASE = "fraud"


def run_demo() -> int:
    s = get_settings()
    t0 = time.perf_counter()
    prepare()
    from ml_platform.defs import build_definitions, names
    from ml_platform.defs.run import run_job
    from ml_platform.use_cases import get_use_case

    use_case = get_use_case(DEMO_USE_CASE)
    defs = build_definitions([use_case.name], settings=s)

    print(
        f"ml_platform demo: {s.start_date}..{s.end_date} ({s.n_days} days), data in {s.data_dir}",
        flush=True,
    )
    jobs = {
        use_case.qualified(names.SPINE_JOB): "ingestion, validation, dbt warehouse",
        use_case.qualified(
            names.TRAINING_FEATURES_JOB
        ): f"features, online store as of {s.end_date} end of day",
    }
    for job_name, what in jobs.items():
        t = stage_started(job_name, what)
        run_job(defs, job_name, start=s.start_date, end=s.end_date, log_level="WARNING")
        stage_done(job_name, t)
    training_job = use_case.qualified(names.TRAINING_JOB)
    t = stage_started(training_job, "baseline + LightGBM, MLflow registry, promotion gate")
    run_job(defs, training_job, log_level="WARNING")
    stage_done(training_job, t)

    from ml_platform.summary import print_summary

    print_summary(s)
    from ml_platform.training.registry import champion_report

    print(champion_report(model_name=use_case.model_name))
    # serving: batch predictions with the champion, then how to call the API
    from ml_platform.serving.demo import run_serving_step

    run_serving_step(defs, s, use_case)
    # monitoring: labeled performance (dbt), drift report, skew, summary chart
    from ml_platform.monitoring.demo_step import run_monitoring_step

    stage_started(
        "monitoring",
        f"{use_case.qualified(names.LABELED_PERFORMANCE_JOB)}, then "
        f"{use_case.qualified(names.MONITORING_JOB)}: drift, skew",
    )
    run_monitoring_step(defs, s, use_case)
    logs = s.data_dir / "logs"
    print(f"  run output (dbt and MLflow log lines): {logs}/<job>.log; every event: make dev")
    print(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
