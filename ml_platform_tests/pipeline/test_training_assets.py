"""The training assets materialized by Dagster: training set, challenger, promotion gate."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from ml_platform.data import lake
from ml_platform.defs.run import run_job
from ml_platform_tests.dagster_support import fraud, names


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(key):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} not materialized")


@pytest.mark.slow
def test_training_job_registers_and_promotes_with_lineage(settings_env, dask_client):
    s = settings_env()
    ctx, defs = fraud(names.INGESTION, names.FEATURES, names.TRAINING)
    instance = dg.DagsterInstance.ephemeral()
    assert run_job(
        defs, "fraud_feature_pipeline_job", start=s.start_date, end=s.end_date, instance=instance
    ).success

    first = run_job(defs, "fraud_training_job", instance=instance)
    assert first.success
    ts_meta = _metadata(first, "fraud_training_set")
    assert ts_meta["as_of"] == s.end_date.isoformat()
    stored = pd.read_parquet(s.lake_dir / "training_set" / lake.FILE_NAME)
    newest = stored["tx_datetime"].max().normalize()
    assert newest <= pd.Timestamp(s.end_date) - pd.Timedelta(days=s.label_delay_days)

    cand = _metadata(first, "fraud_candidate_model")
    assert cand["compute"] == "local"
    assert cand["model_name"] == ctx.model_name == "fraud_detector"
    assert cand["model_version"] == "1" and cand["mlflow_run_id"]
    assert cand["feature_version"] and cand["dataset_digest"] and cand["git_commit"]
    gate = _metadata(first, "fraud_champion_model")
    assert gate["promoted"] and gate["champion_version"] == "1", gate["reason"]

    from ml_platform.training import registry

    assert registry.get_model_info("1", model_name=ctx.model_name).tags["use_case"] == "fraud"
    second = run_job(defs, "fraud_training_job", instance=instance)
    assert second.success
    gate2 = _metadata(second, "fraud_champion_model")
    assert gate2["challenger_version"] == "2"
    # same data, same model: an identical challenger never clears the margin
    assert not gate2["promoted"] and "margin" in gate2["reason"]
    info = registry.get_model_info("2", model_name=ctx.model_name)
    assert info.tags["gate.decision"] == "rejected"
    assert registry.current_version("champion", model_name=ctx.model_name) == "1"

    # compute on Dask, the set above the size setting: fitted on the cluster, registered and
    # traced like a local model
    settings_env(compute="dask", dask_address=dask_client.scheduler.address, dask_train_min_rows=1)
    _, dask_defs = fraud(names.INGESTION, names.FEATURES, names.TRAINING)
    third = run_job(dask_defs, "fraud_training_job", instance=instance)
    assert third.success
    cand3 = _metadata(third, "fraud_candidate_model")
    assert cand3["compute"] == "dask" and cand3["model_version"] == "3"
    from mlflow.tracking import MlflowClient

    run = MlflowClient(s.tracking_uri).get_run(cand3["mlflow_run_id"])
    logged = {v for k, v in run.data.params.items() if k.split(".")[-1] == "compute"}
    assert logged == {"dask"}, run.data.params
