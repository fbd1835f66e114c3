"""The code location: loaded lazily, and every name it defines carries the use case's name.

A snapshot of the fraud definitions (asset keys, checks, groups, jobs, sensors, schedules)
and of the flights ones (``test_flights_pipeline.py``): a rename or a new definition must
show up here, deliberately.
"""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import pytest

from ml_platform.settings import PROJECT_DIR

FRAUD_ASSETS = {
    "fraud_raw_events",
    "fraud_validated_events",
    "fraud_quarantined_events",
    "fraud_stg_transactions",
    "fraud_dim_customers",
    "fraud_dim_terminals",
    "fraud_fct_daily_transactions",
    "fraud_fct_prediction_outcomes",
    "fraud_mart_model_performance_daily",
    "fraud_event_features",
    "fraud_online_feature_store",
    "fraud_training_set",
    "fraud_candidate_model",
    "fraud_champion_model",
    "fraud_batch_predictions",
    "fraud_edge_package",
    "fraud_online_predictions",
    "fraud_drift_report",
    "fraud_serving_skew",
    "fraud_model_performance",
    "fraud_monitoring_summary",
}
FRAUD_GROUPS = {
    "fraud_ingestion",
    "fraud_warehouse",
    "fraud_features",
    "fraud_training",
    "fraud_serving",
    "fraud_monitoring",
}
FRAUD_JOBS = {
    "fraud_spine_job",
    "fraud_daily_pipeline_job",
    "fraud_feature_pipeline_job",
    "fraud_training_features_job",
    "fraud_training_job",
    "fraud_batch_scoring_job",
    "fraud_edge_job",
    "fraud_monitoring_job",
    "fraud_labeled_performance_job",
}
FRAUD_SENSORS = {"fraud_retraining_sensor", "fraud_new_data_sensor"}
FRAUD_SCHEDULES = {"fraud_daily_pipeline_schedule"}
#: The platform's own checks (dbt tests add theirs, named by dbt, on the prefixed models)
FRAUD_CHECKS = {
    ("fraud_validated_events", "fraud_quarantine_share_within_limit"),
    ("fraud_drift_report", "fraud_drift_share_below_threshold"),
    ("fraud_serving_skew", "fraud_no_serving_skew"),
}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from ml_platform.defs import build_definitions

    return build_definitions(["fraud"])


def test_the_code_location_serves_fraud_and_flights() -> None:
    """Every use case of DAGSTER_USE_CASES, side by side, each with exactly its own names."""
    from ml_platform.defs import DAGSTER_USE_CASES, build_definitions
    from ml_platform_tests.pipeline.test_flights_pipeline import (
        FLIGHTS_ASSETS,
        FLIGHTS_JOBS,
        FLIGHTS_SENSORS,
        flights_settings,
    )

    assert DAGSTER_USE_CASES == ("fraud", "flights")
    both = build_definitions(use_case_settings={"flights": flights_settings()})
    keys = {k.to_user_string() for k in both.resolve_asset_graph().get_all_asset_keys()}
    assert keys == FRAUD_ASSETS | FLIGHTS_ASSETS
    assert {j.name for j in both.jobs or []} == FRAUD_JOBS | FLIGHTS_JOBS
    assert {s.name for s in both.sensors or []} == FRAUD_SENSORS | FLIGHTS_SENSORS


def test_every_fraud_definition_is_listed_and_prefixed(defs) -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == FRAUD_ASSETS
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == FRAUD_GROUPS
    jobs = {j.name for j in defs.jobs or []}
    assert jobs == FRAUD_JOBS
    assert {s.name for s in defs.sensors or []} == FRAUD_SENSORS
    assert {s.name for s in defs.schedules or []} == FRAUD_SCHEDULES
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks >= FRAUD_CHECKS
    assert {asset for asset, _ in checks} <= keys
    own = {c for c in checks if not c[1].startswith(("not_null_", "unique_", "accepted_values_"))}
    own -= {c for c in checks if c[1].startswith(("relationships_", "value_between_"))}
    assert own == FRAUD_CHECKS  # any other check is a dbt test's
    every_name = [*keys, *FRAUD_GROUPS, *jobs, *FRAUD_SENSORS, *FRAUD_SCHEDULES]
    assert all(name.startswith("fraud_") for name in every_name)


def test_the_names_come_from_the_base_names_and_the_use_case(defs) -> None:
    """Every asset key is ``UseCase.qualified(base)`` of a constant of ``defs.names``."""
    from ml_platform.defs import names
    from ml_platform.use_cases import get_use_case

    fraud = get_use_case("fraud")
    bases = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    graph = defs.resolve_asset_graph()
    dbt_models = {"stg_transactions", "dim_customers", "dim_terminals", "fct_daily_transactions"}
    for key in graph.get_all_asset_keys():
        base = key.to_user_string().removeprefix(f"{fraud.name}_")
        assert fraud.qualified(base) == key.to_user_string()
        assert base in bases | dbt_models, base
    for job in defs.jobs or []:
        assert job.name.removeprefix("fraud_") in bases
        assert job.tags.get("ml_platform/use_case") == "fraud"


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_importing_the_entry_point_reads_no_setting_and_builds_nothing() -> None:
    """An invalid ML_PLATFORM_START_DATE does not break the import (nothing is read then);
    building the definitions fails naming the variable."""
    code = (
        "import sys\n"
        "import ml_platform.definitions as entry\n"
        "import ml_platform.defs\n"
        "loaded = [m for m in sys.modules if m.startswith(('dagster_dbt', 'ml_platform.'))]\n"
        "stages = set(loaded) - {'ml_platform.definitions', 'ml_platform.defs', "
        "'ml_platform.defs.names'}\n"
        "assert not stages, f'imported at import: {sorted(stages)}'\n"
        "from ml_platform.settings import get_settings\n"
        "assert get_settings.cache_info().currsize == 0, 'settings were read at import'\n"
        "print(type(entry.defs).__name__)\n"
        "try:\n"
        "    entry.defs()\n"
        "except ValueError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    done = _python(code, ML_PLATFORM_START_DATE="not-a-date")
    assert done.returncode == 0, done.stderr
    first, error = done.stdout.strip().splitlines()[-2:]
    assert first == "LazyDefinitions"
    assert error.startswith("ERROR settings: ML_PLATFORM_START_DATE: ")
    assert "'not-a-date'" in error


def test_definitions_are_built_for_the_dates_they_are_given(defs) -> None:
    """Two builds, two date ranges, one process: the partitions follow the settings."""
    from datetime import date

    from ml_platform.defs import build_definitions, names
    from ml_platform.settings import Settings

    s = Settings(start_date=date(2024, 1, 1), end_date=date(2024, 1, 10))
    other = build_definitions(["fraud"], settings=s, stages=(names.INGESTION,))
    keys = other.resolve_job_def("__ASSET_JOB").partitions_def.get_partition_keys()
    assert keys[0] == "2024-01-01" and keys[-1] == "2024-01-10" and len(keys) == 10
    mine = defs.resolve_job_def("fraud_spine_job").partitions_def.get_partition_keys()
    assert mine[0] != "2024-01-01"


def test_an_unknown_use_case_is_a_clear_error() -> None:
    from ml_platform.defs import build_definitions

    with pytest.raises(ValueError, match="use cases: churn not found"):
        build_definitions(["churn"])


#: fraud's own dbt models (its folder's): no other use case has them
FLAGSHIP_ONLY_ASSETS = {
    "fraud_dim_customers",
    "fraud_dim_terminals",
    "fraud_fct_daily_transactions",
}


def test_two_use_cases_build_side_by_side_without_a_shared_name(settings_env, tmp_path) -> None:
    """A second use case (a team's copy of fraud, renamed) gets its own prefixed assets,
    checks, groups, jobs, sensors, schedule, lake tables and registered model, in one
    location: every stage, none left out."""
    from ml_platform.defs import STAGES, build_definitions, unsupported_reason
    from ml_platform.defs.context import StageContext
    from ml_platform.use_cases import get_use_case
    from ml_platform.use_cases.loader import use_case_roots
    from ml_platform_tests.unit.test_use_cases import write_case

    write_case(tmp_path / "team", "churn")
    s = settings_env(use_case_dirs=str(tmp_path / "team"))
    both = build_definitions(["fraud", "churn"])
    graph = both.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    churn = {k.replace("fraud_", "churn_", 1) for k in FRAUD_ASSETS - FLAGSHIP_ONLY_ASSETS}
    # its staging model is generated under the base name (fraud keeps stg_transactions)
    churn = churn - {"churn_stg_transactions"} | {"churn_stg_events"}
    assert keys == FRAUD_ASSETS | churn
    churn_groups = {g.replace("fraud_", "churn_", 1) for g in FRAUD_GROUPS}
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == (
        FRAUD_GROUPS | churn_groups
    )
    jobs = {j.name for j in both.jobs or []}
    assert jobs == FRAUD_JOBS | {j.replace("fraud_", "churn_", 1) for j in FRAUD_JOBS}
    churn_sensors = {x.replace("fraud_", "churn_", 1) for x in FRAUD_SENSORS}
    assert {x.name for x in both.sensors or []} == FRAUD_SENSORS | churn_sensors
    churn_schedules = {x.replace("fraud_", "churn_", 1) for x in FRAUD_SCHEDULES}
    assert {x.name for x in both.schedules or []} == FRAUD_SCHEDULES | churn_schedules
    candidate = graph.get(dg.AssetKey("churn_candidate_model"))
    assert "churn_model" in (candidate.description or "")
    assert candidate.metadata["ml_platform/use_case"] == "churn"
    # its lake tables are its own
    validated = graph.get(dg.AssetKey("churn_validated_events"))
    assert validated.metadata["ml_platform/lake_table"] == "churn_validated_events"
    ctx = StageContext(get_use_case("churn", use_case_roots(s.use_case_dirs)), s)
    assert [stage for stage in STAGES if unsupported_reason(stage, ctx)] == []
