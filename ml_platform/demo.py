"""``make demo``: every shipped use case end to end on embedded defaults, then a summary.

One Dagster code location holds every use case; the demo runs each one's stages in pipeline
order, as its definitions contain them: ingestion (with the dbt warehouse where the use case
has one), features and the online store as of the range's end, training with the promotion
gate, batch predictions and a real request's answer, then monitoring where the use case has
it. A stage a use case gains later (a warehouse, monitoring) runs without a change here.
Nothing is left running.

The flagship (fraud) runs on the platform settings (``ML_PLATFORM_*``). Another use case
runs on its folder's settings, over its first :data:`DEMO_DAYS` days with the training and
validation windows shortened to fit, unless its own ``<PREFIX>START_DATE``,
``<PREFIX>END_DATE``, ``<PREFIX>TRAIN_DAYS`` or ``<PREFIX>VALID_DAYS`` is set (then that
value is used as is).

Each stage prints a line when it starts and one when it is done: the first run takes
minutes, and a console that stays silent meanwhile looks hung.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ml_platform.runtime import ensure_dagster_home, quiet_telemetry
from ml_platform.settings import Settings, get_settings

if TYPE_CHECKING:
    from ml_platform.use_cases import UseCase
    from ml_platform.use_cases.spec import ResolvedSettings

#: ``ml-platform demo --use-case ALL`` (the default): every shipped use case, flagship first.
ALL = "all"
#: The use cases ``make demo`` runs, in this order.
DEMO_USE_CASES = ("fraud", "flights")
#: Days a non-flagship use case's demo covers (from its first day) unless its dates are set.
DEMO_DAYS = 28


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


def store_summary(settings: Settings, use_case: UseCase | None = None) -> str:
    """The online store's kind, watermark and entity counts, as one line."""
    from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID
    from ml_platform.features.stores import open_store

    if use_case is None or use_case.is_flagship:
        with open_store(settings) as store:
            d = store.describe()
        n = d["entities"]
        counts = f"{n[CUSTOMER_ID]:,} customers, {n[TERMINAL_ID]:,} terminals"
    else:
        from ml_platform.use_cases.loader import engine_label_delay

        delay = engine_label_delay(use_case, settings.label_delay_days)
        with open_store(settings, delay, use_case=use_case) as store:
            d = store.describe()
        counts = ", ".join(f"{n:,} {entity}" for entity, n in d["entities"].items())
    return f"online store ({d['kind']}): watermark {d['watermark'] or '- (empty)'}, {counts}"


def demo_settings(
    use_case: UseCase, days: int = DEMO_DAYS, environ: dict[str, str] | None = None
) -> ResolvedSettings:
    """A non-flagship use case's demo settings: its own, over its first ``days`` days with
    windows that fit (training, the label delay, validation, the label delay), each value
    its ``<PREFIX>*`` variable sets kept as is."""
    from ml_platform.use_cases import resolve_settings
    from ml_platform.use_cases.loader import declared_label_delay

    env = dict(os.environ if environ is None else environ)
    p = use_case.env_prefix
    own = resolve_settings(use_case, environ=env)
    delay = declared_label_delay(use_case) or 1
    valid = min(own.valid_days, max(1, days // 4))
    chosen = {
        "END_DATE": (own.start_date + timedelta(days=days - 1)).isoformat(),
        "VALID_DAYS": str(valid),
        "TRAIN_DAYS": str(min(own.train_days, max(1, days - 2 * delay - valid - 1))),
    }
    for field, value in chosen.items():
        env.setdefault(f"{p}{field}", value)
    return resolve_settings(use_case, environ=env)


def _jobs(defs: Any) -> set[str]:
    return {job.name for job in defs.jobs or []}


def _ingestion_job(defs: Any, use_case: UseCase) -> tuple[str, str]:
    """The first stage: ingestion and the warehouse (the spine job) where the use case has
    them, else ingestion and features."""
    from ml_platform.defs import names

    spine = use_case.qualified(names.SPINE_JOB)
    if spine in _jobs(defs):
        return spine, "ingestion, validation, dbt warehouse"
    return use_case.qualified(names.FEATURE_PIPELINE_JOB), "ingestion, validation, features"


def run_use_case(defs: Any, settings: Settings, use_case: UseCase, start, end) -> None:
    """One use case end to end over ``start..end`` through its Dagster jobs."""
    from ml_platform.defs import names
    from ml_platform.defs.run import run_job
    from ml_platform.monitoring.demo_step import run_monitoring_step
    from ml_platform.serving.demo import run_serving_step
    from ml_platform.summary import print_summary
    from ml_platform.training.registry import champion_report

    first, what = _ingestion_job(defs, use_case)
    jobs = {
        first: what,
        use_case.qualified(names.TRAINING_FEATURES_JOB): (
            f"features, online store as of {end} end of day"
        ),
    }
    for job_name, what in jobs.items():
        t = stage_started(job_name, what)
        run_job(defs, job_name, start=start, end=end, log_level="WARNING")
        stage_done(job_name, t)
    training_job = use_case.qualified(names.TRAINING_JOB)
    t = stage_started(training_job, "baseline + LightGBM, MLflow registry, promotion gate")
    run_job(defs, training_job, log_level="WARNING")
    stage_done(training_job, t)

    print_summary(settings, None if use_case.is_flagship else use_case.name)
    print(champion_report(model_name=use_case.model_name, use_case=use_case))
    # serving: batch predictions with the champion, then how to call the API
    run_serving_step(defs, settings, use_case)
    # monitoring: labeled performance (dbt), drift report, skew, summary chart
    labeled = use_case.qualified(names.LABELED_PERFORMANCE_JOB)
    monitoring = use_case.qualified(names.MONITORING_JOB)
    if {labeled, monitoring} <= _jobs(defs):
        stage_started("monitoring", f"{labeled}, then {monitoring}: drift, skew")
        run_monitoring_step(defs, settings, use_case, start, end)


def demo_use_cases(choice: str) -> list[str]:
    """The use cases ``--use-case`` names: every shipped one for ``all``."""
    from ml_platform.use_cases import get_use_case

    if choice == ALL:
        return list(DEMO_USE_CASES)
    return [get_use_case(choice).name]  # an unknown name fails naming the folders searched


def run_demo(use_cases: Sequence[str] = DEMO_USE_CASES, *, days: int = DEMO_DAYS) -> int:
    """Run ``use_cases`` end to end, one after the other, in one data folder and instance."""
    from ml_platform.defs import build_definitions
    from ml_platform.use_cases import get_use_case

    s = get_settings()
    t0 = time.perf_counter()
    prepare()
    cases = [get_use_case(name) for name in use_cases]
    own = {uc.name: demo_settings(uc, days) for uc in cases if not uc.is_flagship}
    defs = build_definitions([uc.name for uc in cases], settings=s, use_case_settings=own)
    for uc in cases:
        if uc.is_flagship:
            start, end = s.start_date, s.end_date
            print(
                f"ml_platform demo: {s.start_date}..{s.end_date} ({s.n_days} days), "
                f"data in {s.data_dir}",
                flush=True,
            )
        else:
            r = own[uc.name]
            start, end = r.start_date, r.end_date
            n = (end - start).days + 1
            print(
                f"\nml_platform demo, use case {uc.name}: {start}..{end} ({n} days; "
                f"train {r.train_days} days, validate {r.valid_days}), data in {s.data_dir}",
                flush=True,
            )
        run_use_case(defs, s, uc, start, end)
    logs = s.data_dir / "logs"
    print(f"  run output (dbt and MLflow log lines): {logs}/<job>.log; every event: make dev")
    print(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
