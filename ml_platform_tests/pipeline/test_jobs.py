"""What the documented jobs run: their asset selections, resolved from the real Definitions.

The README promises what each job covers; a group or selection edit that silently drops a
stage (or drags one in) must fail here, not in production at 00:30.
"""

from __future__ import annotations

import dagster as dg
import pytest

#: The assets of each stage the README names for ``daily_pipeline_job``.
DAILY_STAGES = {
    "ingestion": ("raw_transactions", "validated_transactions", "quarantined_transactions"),
    "warehouse": (
        "stg_transactions",
        "dim_customers",
        "dim_terminals",
        "fct_daily_transactions",
        "fct_prediction_outcomes",
        "mart_model_performance_daily",
    ),
    "features": ("transaction_features",),
    "online store": ("online_feature_store",),
    "batch predictions": ("batch_predictions",),
    "monitoring": (
        "online_predictions",
        "drift_report",
        "serving_skew",
        "model_performance",
        "monitoring_summary",
    ),
}
OUTCOME_MODELS = ("fct_prediction_outcomes", "mart_model_performance_daily")
LABELED_PERFORMANCE = (*OUTCOME_MODELS, "model_performance")
MONITORING = (*DAILY_STAGES["monitoring"], *OUTCOME_MODELS)
EDGE = ("edge_package",)


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from ml_platform.defs import build_definitions

    return build_definitions()


def _selected(defs: dg.Definitions, job_name: str) -> set[str]:
    job = defs.resolve_job_def(job_name)
    return {k.to_user_string() for k in job.asset_layer.selected_asset_keys}


@pytest.mark.parametrize(
    ("job_name", "expected"),
    [
        ("daily_pipeline_job", {a for stage in DAILY_STAGES.values() for a in stage}),
        ("labeled_performance_job", set(LABELED_PERFORMANCE)),
        ("monitoring_job", set(MONITORING)),
        ("edge_job", set(EDGE)),
    ],
)
def test_job_selects_exactly_the_documented_assets(defs, job_name, expected):
    assert _selected(defs, job_name) == expected


def test_daily_pipeline_job_covers_every_daily_stage_and_nothing_of_training(defs):
    from ml_platform.defs.automation.schedules import daily_pipeline_job, daily_schedule
    from ml_platform.defs.automation.sensors import DAILY_JOB
    from ml_platform.defs.partitions import daily_partitions

    graph = defs.resolve_asset_graph()
    daily = _selected(defs, DAILY_JOB)
    partitioned = {
        k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).partitions_def
    }
    assert partitioned <= daily  # a new daily asset must join the daily run
    groups = {graph.get(dg.AssetKey(a)).group_name for a in daily}
    assert "training" not in groups  # retraining is the sensor's decision, not the schedule's
    assert not set(EDGE) & daily
    # the schedule and the new-data sensor start this very job, one day at a time
    assert daily_schedule.job_name == daily_pipeline_job.name == DAILY_JOB
    assert defs.resolve_job_def(DAILY_JOB).partitions_def == daily_partitions


def test_edge_job_is_unpartitioned(defs):
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(EDGE[0])).partitions_def is None
    assert defs.resolve_job_def("edge_job").partitions_def is None
