"""The monitoring assets materialized on a small real platform state (monitoring_world):
drift report + check over a partition range, online-prediction export, serving skew with an
injected mismatch, labeled performance through the dbt models, and the summary."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_platform.data import lake
from ml_platform.settings import get_settings
from ml_platform_tests.dagster_support import fraud, names
from ml_platform_tests.pipeline.monitoring_world import TAMPERED_FEATURE, build_world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_PLATFORM_DATA_DIR", str(tmp_path_factory.mktemp("monitoring") / "data"))
        get_settings.cache_clear()
        yield build_world(get_settings())
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def built(world):
    """The fraud monitoring and warehouse definitions for the world's settings."""
    return fraud(names.MONITORING, names.WAREHOUSE, settings=world.settings)


def asset(built, base: str) -> dg.AssetsDefinition:
    ctx, defs = built
    return defs.get_assets_def(ctx.key(base))


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def resources(settings) -> dict:
    from ml_platform.defs.resources import LakeIOManager

    return {"io_manager": LakeIOManager(lake_dir=str(settings.lake_dir))}


def meta(event) -> dict:
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def daily_run(world, built, instance):
    """drift_report, online_predictions, serving_skew over the last two days, one run."""
    first = world.days[-2]
    daily = (names.ONLINE_PREDICTIONS, names.DRIFT_REPORT, names.SERVING_SKEW)
    return dg.materialize(
        [asset(built, base) for base in daily],
        instance=instance,
        resources=resources(world.settings),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: world.last_day.isoformat(),
        },
    )


def test_drift_report_per_partition_with_html_and_check(world, daily_run):
    assert daily_run.success
    events = [
        e
        for e in daily_run.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("fraud_drift_report")
    ]
    assert sorted(e.materialization.partition for e in events) == [
        world.days[-2].isoformat(),
        world.last_day.isoformat(),
    ]
    for e in events:
        m = meta(e)
        assert m["drift_share"] > world.settings.drift_share_threshold
        assert "tx_amount" in m["drifted_features"]  # the injected amount shift
        assert m["reference_model_version"] == world.champion_version
        assert Path(m["report"]).exists() and Path(m["report"]).stat().st_size > 10_000
        assert m["prediction_drift_method"]
    check = next(
        c
        for c in daily_run.get_asset_check_evaluations()
        if c.check_name == "fraud_drift_share_below_threshold"
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    stored = lake.read_partitions(world.settings.lake_dir, "drift_report", [world.last_day])
    assert set(stored["kind"]) == {"feature", "prediction"}
    assert stored.loc[stored["column"] == "tx_amount", "drifted"].item()


def test_online_predictions_and_skew_find_the_injected_mismatch(world, daily_run):
    s = world.settings
    online = lake.read_partitions(s.lake_dir, "online_predictions", [world.last_day])
    assert len(online) == world.n_logged
    assert online["model_version"].eq(world.champion_version).all()
    before = lake.read_partitions(s.lake_dir, "online_predictions", [world.days[-2]])
    assert before.empty

    skew = lake.read_partitions(s.lake_dir, "serving_skew", [world.last_day]).set_index("feature")
    assert skew.loc[TAMPERED_FEATURE, "n_mismatch"] == 1
    assert skew.loc[TAMPERED_FEATURE, "example_transaction_id"] == world.tampered_id
    assert skew.loc[TAMPERED_FEATURE, "max_abs_diff"] == pytest.approx(3.0)
    assert (skew.drop(index=TAMPERED_FEATURE)["n_mismatch"] == 0).all()
    assert (skew["n_compared"] == world.n_logged).all()
    check = next(
        c
        for c in daily_run.get_asset_check_evaluations()
        if c.check_name == "fraud_no_serving_skew"
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR


def test_model_performance_through_dbt(world, built, daily_run, instance):
    from dagster_dbt import DbtCliResource

    from ml_platform.defs.warehouse.project import warehouse_project

    ctx, _ = built
    model_performance = asset(built, names.MODEL_PERFORMANCE)
    warehouse_dbt = asset(built, "stg_transactions")
    res = resources(world.settings) | {"dbt": DbtCliResource(project_dir=warehouse_project)}
    dbt_run = dg.materialize(
        [warehouse_dbt],
        selection=[
            ctx.key(model)
            for model in (
                "stg_transactions",
                "dim_customers",
                "dim_terminals",
                names.DBT_PREDICTION_OUTCOMES,
                names.DBT_PERFORMANCE_MART,
            )
        ],
        instance=instance,
        resources=res,
        tags={
            # the days with batch predictions (from day 20) are the ones the outcomes need
            ASSET_PARTITION_RANGE_START_TAG: world.days[20].isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: world.last_day.isoformat(),
        },
    )
    assert dbt_run.success
    mine = [
        c
        for c in dbt_run.get_asset_check_evaluations()
        if "prediction" in c.check_name or "performance" in c.check_name
    ]
    assert mine and all(c.passed for c in mine)

    run = dg.materialize([model_performance], instance=instance, resources=res)
    assert run.success
    table = pd.read_parquet(world.settings.lake_dir / "model_performance" / lake.FILE_NAME)
    # predictions exist from day 20; labels mature 7 days later (as of the last day, 35)
    labeled = sorted(table["tx_date"].unique())
    assert labeled[0] == world.days[20].isoformat() and labeled[-1] == world.days[27].isoformat()
    assert set(table["source"]) == {"batch"}  # the online answers (last day) are not matured
    # the SQL rank-sum AUC of the dbt mart equals sklearn's
    both = table.dropna(subset=["roc_auc"])
    assert (both["roc_auc"] - both["roc_auc_sql"]).abs().max() < 1e-9
    m = meta(run.get_asset_materialization_events()[0])
    assert m["latest_labeled_day"] == world.days[27].isoformat()


def test_monitoring_summary(world, built, daily_run, instance):
    run = dg.materialize(
        [asset(built, names.MONITORING_SUMMARY)],
        instance=instance,
        resources=resources(world.settings),
    )
    m = meta(run.get_asset_materialization_events()[0])
    assert Path(m["chart"]).stat().st_size > 20_000
    assert m["chart_preview"].startswith("![monitoring summary](data:image/png;base64,")
    assert m["api"]["n_requests"] == world.n_logged and m["api"]["latency_p99_ms"] > 0
    assert m["latest_drift_share"] > world.settings.drift_share_threshold
    assert m["run_durations"]  # the earlier runs of this instance
