"""What the documented jobs run: their asset selections, resolved from the real Definitions.

The README promises what each job covers; a group or selection edit that silently drops a
stage (or drags one in) must fail here, not in production at 00:30.
"""

from __future__ import annotations

import dagster as dg
import pytest

#: The assets of each stage the README names for ``fraud_daily_pipeline_job``.
DAILY_STAGES = {
    "ingestion": ("fraud_raw_events", "fraud_validated_events", "fraud_quarantined_events"),
    "warehouse": (
        "fraud_stg_transactions",
        "fraud_dim_customers",
        "fraud_dim_terminals",
        "fraud_fct_daily_transactions",
        "fraud_fct_prediction_outcomes",
        "fraud_mart_model_performance_daily",
    ),
    "features": ("fraud_event_features",),
    "online store": ("fraud_online_feature_store",),
    "batch predictions": ("fraud_batch_predictions",),
    "monitoring": (
        "fraud_online_predictions",
        "fraud_drift_report",
        "fraud_serving_skew",
        "fraud_model_performance",
        "fraud_monitoring_summary",
    ),
}
OUTCOME_MODELS = ("fraud_fct_prediction_outcomes", "fraud_mart_model_performance_daily")
LABELED_PERFORMANCE = (*OUTCOME_MODELS, "fraud_model_performance")
MONITORING = (*DAILY_STAGES["monitoring"], *OUTCOME_MODELS)
EDGE = ("fraud_edge_package",)
DAILY_JOB = "fraud_daily_pipeline_job"


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from ml_platform.defs import build_definitions

    return build_definitions(["fraud"])


def _selected(defs: dg.Definitions, job_name: str) -> set[str]:
    job = defs.resolve_job_def(job_name)
    return {k.to_user_string() for k in job.asset_layer.selected_asset_keys}


@pytest.mark.parametrize(
    ("job_name", "expected"),
    [
        (DAILY_JOB, {a for stage in DAILY_STAGES.values() for a in stage}),
        ("fraud_labeled_performance_job", set(LABELED_PERFORMANCE)),
        ("fraud_monitoring_job", set(MONITORING)),
        ("fraud_edge_job", set(EDGE)),
        ("fraud_spine_job", {*DAILY_STAGES["ingestion"], *DAILY_STAGES["warehouse"]}),
        (
            "fraud_training_job",
            {"fraud_training_set", "fraud_candidate_model", "fraud_champion_model"},
        ),
        ("fraud_feature_pipeline_job", {*DAILY_STAGES["ingestion"], "fraud_event_features"}),
        ("fraud_batch_scoring_job", set(DAILY_STAGES["batch predictions"])),
    ],
)
def test_job_selects_exactly_the_documented_assets(defs, job_name, expected):
    assert _selected(defs, job_name) == expected


def test_daily_pipeline_job_covers_every_daily_stage_and_nothing_of_training(defs):
    from ml_platform.defs.partitions import build_daily_partitions
    from ml_platform.settings import get_settings

    graph = defs.resolve_asset_graph()
    daily = _selected(defs, DAILY_JOB)
    partitioned = {
        k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def
    }
    assert partitioned <= daily  # a new daily asset must join the daily run
    groups = {graph.get(dg.AssetKey(a)).group_name for a in daily}
    assert "fraud_training" not in groups  # retraining is the sensor's decision, not the schedule's
    assert not set(EDGE) & daily
    # the schedule and the new-data sensor start this very job, one day at a time
    assert defs.resolve_schedule_def("fraud_daily_pipeline_schedule").job_name == DAILY_JOB
    assert defs.resolve_sensor_def("fraud_new_data_sensor").job_name == DAILY_JOB
    daily_partitions = build_daily_partitions(get_settings())
    assert defs.resolve_job_def(DAILY_JOB).partitions_def == daily_partitions


def test_edge_job_is_unpartitioned(defs):
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(EDGE[0])).partitions_def is None
    assert defs.resolve_job_def("fraud_edge_job").partitions_def is None
