"""Child-process entry point of ``ml-platform backtest``: materialize the feature pipeline.

Runs ``feature_pipeline_job`` (raw -> validated -> transaction_features) over the whole
``ML_PLATFORM_START_DATE..END_DATE`` range as one single-run backfill, on the instance in
``DAGSTER_HOME``. The parent sets an isolated environment (temp data dir and DAGSTER_HOME,
source = files); only the stages the job needs are loaded (no dbt manifest required).
"""

from __future__ import annotations

import sys


def main() -> int:
    from ml_platform.runtime import ensure_dagster_home, quiet_telemetry

    quiet_telemetry()
    ensure_dagster_home()

    import dagster as dg

    from ml_platform.defs import features, ingestion, training
    from ml_platform.defs.resources import build_resources
    from ml_platform.defs.run import run_job
    from ml_platform.settings import get_settings

    s = get_settings()
    defs = dg.Definitions.merge(
        ingestion.defs,
        features.defs,
        training.defs,
        dg.Definitions(resources=build_resources(), executor=dg.in_process_executor),
    )
    result = run_job(defs, "feature_pipeline_job", start=s.start_date, end=s.end_date)
    print(f"feature_pipeline_job {s.start_date}..{s.end_date}: success={result.success}")
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
