"""Base names of everything the Dagster layer defines, one constant each.

A use case's definitions carry its name as a prefix (``UseCase.qualified(base)``:
``fraud_validated_events``, group ``fraud_ingestion``, job ``fraud_training_job``), so two
use cases never collide in one code location. Only the bases live here; the prefix is added
by :class:`ml_platform.defs.context.StageContext`.
"""

from __future__ import annotations

# --- stages (group names) ----------------------------------------------------------------
INGESTION = "ingestion"
WAREHOUSE = "warehouse"
FEATURES = "features"
TRAINING = "training"
SERVING = "serving"
MONITORING = "monitoring"
#: jobs, schedule and sensors (a stage with no assets, so no group)
AUTOMATION = "automation"

# --- assets --------------------------------------------------------------------------------
RAW_EVENTS = "raw_events"
VALIDATED_EVENTS = "validated_events"
QUARANTINED_EVENTS = "quarantined_events"
EVENT_FEATURES = "event_features"
ONLINE_FEATURE_STORE = "online_feature_store"
TRAINING_SET = "training_set"
CANDIDATE_MODEL = "candidate_model"
CHAMPION_MODEL = "champion_model"
BATCH_PREDICTIONS = "batch_predictions"
EDGE_PACKAGE = "edge_package"
ONLINE_PREDICTIONS = "online_predictions"
DRIFT_REPORT = "drift_report"
SERVING_SKEW = "serving_skew"
MODEL_PERFORMANCE = "model_performance"
MONITORING_SUMMARY = "monitoring_summary"
#: dbt models every use case gets (asset key: the prefixed base; DuckDB table:
#: :func:`warehouse_model`)
DBT_STAGING = "stg_events"
DBT_PREDICTION_OUTCOMES = "fct_prediction_outcomes"
DBT_PERFORMANCE_MART = "mart_model_performance_daily"
#: dbt sources of a use case (``<name>_lake``: its events; ``<name>_monitoring``: its predictions)
DBT_LAKE_SOURCE = "lake"
DBT_MONITORING_SOURCE = "monitoring"
#: The warehouse's day column: the daily lake partition a row belongs to (every use case)
WAREHOUSE_DAY = "tx_date"

# --- resources -----------------------------------------------------------------------------
#: ``ComputeResource``: where batch work runs (the run's Dask client, or none)
COMPUTE_RESOURCE = "compute"

# --- ops of multi-assets -----------------------------------------------------------------
VALIDATE_EVENTS = "validate_events"
#: ``<name>_validate_<table>``: the op validating a declared side table
VALIDATE_PREFIX = "validate_"
WAREHOUSE_DBT = "warehouse_dbt"

#: Concurrency pool of everything that writes or reads the DuckDB warehouse: one file for
#: every use case, one writer, so the pool is shared (not prefixed).
WAREHOUSE_POOL = "warehouse"

# --- asset checks --------------------------------------------------------------------------
QUARANTINE_CHECK = "quarantine_share_within_limit"
DRIFT_CHECK = "drift_share_below_threshold"
SKEW_CHECK = "no_serving_skew"

# --- jobs, schedules, sensors --------------------------------------------------------------
SPINE_JOB = "spine_job"
DAILY_PIPELINE_JOB = "daily_pipeline_job"
TRAINING_JOB = "training_job"
FEATURE_PIPELINE_JOB = "feature_pipeline_job"
TRAINING_FEATURES_JOB = "training_features_job"
BATCH_SCORING_JOB = "batch_scoring_job"
EDGE_JOB = "edge_job"
MONITORING_JOB = "monitoring_job"
LABELED_PERFORMANCE_JOB = "labeled_performance_job"
DAILY_PIPELINE_SCHEDULE = "daily_pipeline_schedule"
RETRAINING_SENSOR = "retraining_sensor"
NEW_DATA_SENSOR = "new_data_sensor"

#: The flagship's lake tables (folders under ``<data_dir>/lake``): the documented exception
#: to ``<use case>_<base>``. The flagship's lake predates use cases and its readers outside
#: the Dagster layer (the real-time service, the edge export, monitoring, the dbt sources,
#: benchmarks) name these folders; the flagship's other assets are stored under their base
#: name. Every other use case's table is ``<name>_<base>`` (:func:`lake_table`).
FLAGSHIP_LAKE_TABLES = {
    RAW_EVENTS: "raw_transactions",
    VALIDATED_EVENTS: "validated_transactions",
    QUARANTINED_EVENTS: "quarantined_transactions",
    EVENT_FEATURES: "transaction_features",
}
#: The flagship's warehouse models whose name predates use cases (its other models, and every
#: model of another use case, follow :func:`warehouse_model`).
FLAGSHIP_WAREHOUSE_MODELS = {DBT_STAGING: "stg_transactions"}
#: Prefix of a side table's quarantine asset (``<name>_quarantined_<table>``).
QUARANTINED_PREFIX = "quarantined_"


def lake_table(base: str, use_case: str | None = None) -> str:
    """The lake table of asset ``base`` of ``use_case`` (default: the flagship).

    The flagship keeps its historical names (:data:`FLAGSHIP_LAKE_TABLES`, else the base
    name); any other use case's table is ``<use case>_<base>``, so two use cases never
    share a folder.
    """
    from ml_platform.features.definitions import DEFAULT_USE_CASE

    if use_case is None or use_case == DEFAULT_USE_CASE:
        return FLAGSHIP_LAKE_TABLES.get(base, base)
    return f"{use_case}_{base}"


def warehouse_model(base: str, use_case: str | None = None) -> str:
    """The dbt model (and DuckDB table) of ``base`` of ``use_case`` (default: the flagship).

    Like the lake tables, the flagship keeps its historical names (``stg_transactions``,
    ``fct_prediction_outcomes``, ``dim_customers``); another use case's model is
    ``<use case>_<base>``, so two use cases never share a table of the one warehouse file.
    """
    from ml_platform.features.definitions import DEFAULT_USE_CASE

    if use_case is None or use_case == DEFAULT_USE_CASE:
        return FLAGSHIP_WAREHOUSE_MODELS.get(base, base)
    return f"{use_case}_{base}"


def warehouse_asset_base(model: str, use_case: str | None = None) -> str:
    """What dbt model ``model`` of ``use_case`` is called under the use case's prefix in
    Dagster: the model's name without the ``<use case>_`` its table carries (the flagship's
    models carry none: ``stg_transactions`` is asset ``fraud_stg_transactions``)."""
    from ml_platform.features.definitions import DEFAULT_USE_CASE

    if use_case is None or use_case == DEFAULT_USE_CASE:
        return model
    return model.removeprefix(f"{use_case}_")


def quarantined(table: str) -> str:
    """Base name of the quarantine asset of side table ``table``."""
    return f"{QUARANTINED_PREFIX}{table}"


def validate_side(table: str) -> str:
    """Base name of the op validating side table ``table``."""
    return f"{VALIDATE_PREFIX}{table}"


def side_quarantine_check(table: str) -> str:
    """Base name of the quarantine check of side table ``table``."""
    return f"{table}_{QUARANTINE_CHECK}"
