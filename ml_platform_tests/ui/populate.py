"""Give the UI platform a champion and a drift report, the way a user's jobs would.

Runs in its own process (``python -m ml_platform_tests.ui.populate``) with the environment
of the ``dagster dev`` under test, on the same DAGSTER_HOME and data directory, so its runs,
materializations and metadata are exactly what the UI shows. It only uses the platform's
own jobs, executed in process like ``make demo`` does (``ml_platform.defs.run``):

1. ``fraud_feature_pipeline_job`` restricted to the ingestion group, over the whole range;
2. ``fraud_training_features_job`` over the whole range;
3. ``fraud_training_job``: train, register, promotion gate -> ``@champion``;
4. ``fraud_batch_scoring_job`` and ``fraud_monitoring_job`` restricted to
   ``fraud_drift_report``, for the
   last day (the drift report needs the day's batch scores for its prediction drift).

The retraining sensor is RUNNING by default and the daemon evaluates it as soon as
``dagster dev`` is up: seeing labeled feature days and no champion, it would start a second
training run next to step 3 (and that evaluation creates the MLflow database, which two
processes must not do at once). With ``--sensor-url`` the script therefore waits, after
ingesting, until that ``dagster dev`` has recorded one finished evaluation of the sensor
(on a lake without features it skips); the UI platform's long sensor interval keeps it from
evaluating again during the test. Prints one line per finished step, then one JSON line:
seconds per step, the day of the drift report and what the registry holds for the champion.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

SENSOR = "fraud_retraining_sensor"
LOCATION = "ml_platform"
_TICKS = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) {
    __typename ... on Sensor { sensorState { ticks(limit: 1) { status } } } } }"""


def wait_for_sensor_tick(url: str, sensor: str, timeout: float) -> None:
    """Block until ``dagster dev`` at ``url`` has a finished tick of ``sensor``."""
    import httpx

    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "sensorName": sensor,
    }
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            resp = httpx.post(
                f"{url}/graphql", json={"query": _TICKS, "variables": {"s": selector}}, timeout=3
            )
            found = resp.json()["data"]["sensorOrError"]
            ticks = (found.get("sensorState") or {}).get("ticks") or []
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            ticks = []  # webserver not up yet, or the location still loading
        if ticks and ticks[0]["status"] != "STARTED":
            return
        time.sleep(0.2)
    raise TimeoutError(f"{sensor}: no finished evaluation at {url} after {timeout:.0f}s")


def _range_tags(start: date, end: date) -> dict[str, str]:
    """The tags ``run_job`` puts on a single-run backfill of ``start..end``."""
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    return {
        ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: end.isoformat(),
    }


def populate(sensor_url: str | None = None, timeout: float = 240) -> dict[str, Any]:
    """Run the steps of the module docstring; return seconds per step and what was made."""
    t0 = last = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal last
        now = time.monotonic()
        timings[name] = round(now - last, 1)
        last = now
        print(f"step done: {name.removesuffix('_s')} ({timings[name]}s)", flush=True)

    from ml_platform.runtime import ensure_dagster_home, quiet_telemetry

    quiet_telemetry()
    ensure_dagster_home()

    import dagster as dg

    from ml_platform.defs import build_definitions, names
    from ml_platform.defs.context import fraud_context
    from ml_platform.defs.run import run_job

    ctx = fraud_context()
    s = ctx.settings
    defs = build_definitions([ctx.use_case.name], settings=s)
    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    lap("import_s")

    def run(job: str, *, select: list[dg.AssetKey] | None = None, **kw: Any) -> None:
        if select is None:
            result = run_job(defs, job, instance=instance, log_level="WARNING", **kw)
        else:  # the platform's job, restricted to some of its assets
            result = defs.resolve_job_def(job).execute_in_process(
                run_config=quiet, instance=instance, asset_selection=select, **kw
            )
        if not result.success:
            raise RuntimeError(f"{job} failed")

    ingestion = dg.AssetSelection.groups(ctx.name(names.INGESTION))
    ingestion = ingestion.resolve(defs.resolve_asset_graph())
    run(
        ctx.name(names.FEATURE_PIPELINE_JOB),
        select=list(ingestion),
        tags=_range_tags(s.start_date, s.end_date),
    )
    lap("ingest_s")
    if sensor_url:
        wait_for_sensor_tick(sensor_url, SENSOR, timeout)
        lap("wait_sensor_tick_s")
    run(ctx.name(names.TRAINING_FEATURES_JOB), start=s.start_date, end=s.end_date)
    lap("features_s")
    run(ctx.name(names.TRAINING_JOB))
    lap("training_s")
    run(ctx.name(names.BATCH_SCORING_JOB), start=s.end_date, end=s.end_date)
    lap("batch_scoring_s")
    run(
        ctx.name(names.MONITORING_JOB),
        select=[ctx.key(names.DRIFT_REPORT)],
        partition_key=s.end_date.isoformat(),
    )
    lap("drift_report_s")
    timings["total_s"] = round(time.monotonic() - t0, 1)

    from ml_platform.training import registry

    champion = registry.get_model_info(registry.CHAMPION, model_name=ctx.model_name)
    return {
        "timings": timings,
        "drift_day": s.end_date.isoformat(),
        # What the registry recorded for the champion, to compare with what the UI shows.
        "champion": {
            "version": str(champion.version),
            "kind": champion.kind,
            "valid_average_precision": float(champion.tags["valid_average_precision"]),
            "valid_roc_auc": float(champion.tags["valid_roc_auc"]),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensor-url", default=None, help="dagster dev to wait for (see above)")
    parser.add_argument("--timeout", type=float, default=240, help="seconds to wait for it")
    args = parser.parse_args(argv)
    result = populate(args.sensor_url, args.timeout)
    print(json.dumps(result))  # one JSON line at the end of stdout
    return 0


if __name__ == "__main__":
    sys.exit(main())
