"""Sensor decisions through Dagster's sensor test context: trigger, skip with reason, no
double start; the new-data sensor on a files source. Real lake files, a real registered
champion (small model, test MLflow), a real (test) Dagster instance."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta

import dagster as dg
import pandas as pd
import pytest

from ml_platform.data import lake
from ml_platform.settings import get_settings

RETRAINING = "fraud_retraining_sensor"
NEW_DATA = "fraud_new_data_sensor"
MODEL = "fraud_detector"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Settings pointing at a fresh data dir with 24 days of real features in the lake."""
    from ml_platform.data.simulator import generate_days
    from ml_platform.features import build_features

    root = tmp_path_factory.mktemp("sensors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_PLATFORM_DATA_DIR", str(root / "data"))
        get_settings.cache_clear()
        s = get_settings()
        end = s.start_date + timedelta(days=23)
        tx = generate_days(s.start_date, end, seed=1, n_customers=100, n_terminals=200)
        feats = build_features(tx, label_delay_days=s.label_delay_days)
        feats = tx[["transaction_id", "tx_datetime"]].merge(feats, on="transaction_id")
        for day, frame in feats.groupby(feats["tx_datetime"].dt.date):
            lake.write_partition(frame, s.lake_dir, "transaction_features", day)
        yield {"settings": s, "features": feats, "tx": tx, "mp": mp, "root": root, "end": end}
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def built(name: str):
    """Fraud's sensor or schedule ``name``, built now for the current settings."""
    from ml_platform_tests.dagster_support import fraud, names

    _, defs = fraud(names.TRAINING, names.AUTOMATION)  # the training job the sensor starts
    if name.endswith("_schedule"):
        return defs.resolve_schedule_def(name)
    return defs.resolve_sensor_def(name)


def evaluate(name: str, instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return built(name)(context), context


def test_no_champion_triggers_then_cooldown_then_in_progress(env, instance):
    result, ctx = evaluate(RETRAINING, instance)
    assert isinstance(result, dg.RunRequest)
    assert result.tags["ml_platform/trigger"] == "no_champion"
    assert result.tags["ml_platform/use_case"] == "fraud"
    assert "no champion yet" in result.tags["ml_platform/reason"]
    assert result.run_key == f"retrain-{env['end']}-no_champion"
    assert json.loads(ctx.cursor)["last_retrain_day"] == env["end"].isoformat()

    # the same data day again: the cursor's cooldown says no, with the reason
    again, _ = evaluate(RETRAINING, instance, cursor=ctx.cursor)
    assert isinstance(again, dg.SkipReason)
    assert again.skip_message.startswith("[cooldown]")

    # a training run in progress: never a second one, whatever the signals say
    run = instance.add_run(
        dg.DagsterRun(
            job_name="fraud_training_job",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
        )
    )
    try:
        blocked, _ = evaluate(RETRAINING, instance)
        assert isinstance(blocked, dg.SkipReason)
        assert blocked.skip_message.startswith("[in_progress]")
        assert "already in progress" in blocked.skip_message
    finally:
        instance.report_run_canceled(run)


@pytest.fixture(scope="module")
def champion(env):
    """A real (small) model registered and promoted in the test MLflow."""
    from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION
    from ml_platform.training import registry
    from ml_platform.training.datasets import Windows, join_labels
    from ml_platform.training.metrics import validation_metrics
    from ml_platform.training.models import CandidateSet, fit_baseline

    s = env["settings"]
    labeled = join_labels(env["features"].drop(columns="tx_datetime"), env["tx"])
    day = labeled["tx_datetime"].dt.date
    d = [s.start_date + timedelta(days=i) for i in range(24)]
    w = Windows(d[0], d[4], d[12], d[14], s.label_delay_days)
    train = labeled[(day >= w.train_start) & (day <= w.train_end)]
    valid = labeled[(day >= w.valid_start) & (day <= w.valid_end)]
    model = fit_baseline(train, list(FEATURE_COLUMNS))
    m = validation_metrics(valid, model.score(valid))
    cands = CandidateSet(model, None, m, None, model, "test baseline", 0.5, m)
    info = registry.log_training_run(
        cands,
        train,
        valid,
        w,
        model_name=MODEL,
        use_case="fraud",
        feature_version=FEATURE_VERSION,
    )
    registry.promote(info.version, model_name=MODEL, who="test", why="sensor test champion")
    return registry.get_model_info("champion", model_name=MODEL), w


def write_drift(env, n_shifted: int):
    """A ``drift_report`` partition for the last day made by the drift asset's code: the
    Evidently tests of a sample of the reference against itself with ``n_shifted`` features
    moved far off, stored as the asset's table."""
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.monitoring import daily
    from ml_platform.monitoring.drift import compute_drift

    s, feats, day = env["settings"], env["features"], env["end"]
    reference = feats[feats["tx_datetime"].dt.date < s.start_date + timedelta(days=15)]
    reference = reference[list(FEATURE_COLUMNS)].reset_index(drop=True)
    current = reference.sample(400, random_state=0).reset_index(drop=True)
    for col in FEATURE_COLUMNS[:n_shifted]:
        current[col] = current[col] + 5 * (reference[col].std() or 1.0) + 1.0
    result = compute_drift(reference, current, FEATURE_COLUMNS)
    lake.write_partition(daily.drift_frame(result, day), s.lake_dir, "drift_report", day)
    return result


def test_champion_quiet_skips_with_reason(env, instance, champion):
    drift = write_drift(env, n_shifted=0)
    assert drift.n_features > 20 and drift.drift_share == 0.0
    result, ctx = evaluate(RETRAINING, instance)
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message.startswith("[none]")
    assert "drift share 0.000" in result.skip_message
    # labeled days newer than the champion: matured up to day 16, validation ended day 14
    assert "2 new labeled day(s)" in result.skip_message
    assert ctx.cursor is None  # a skip leaves the cursor alone


def test_champion_drift_triggers(env, instance, champion):
    drift = write_drift(env, n_shifted=15)
    assert drift.drift_share > 0.3
    result, _ = evaluate(RETRAINING, instance)
    assert isinstance(result, dg.RunRequest)
    assert result.tags["ml_platform/trigger"] == "drift"
    assert f"{drift.drift_share:.3f} > threshold 0.300" in result.tags["ml_platform/reason"]


def test_champion_performance_drop_triggers(env, instance, champion):
    """``model_performance`` built by the performance code from batch predictions of a
    champion version whose scores went wrong (reversed) on three matured days."""
    from ml_platform.monitoring import daily
    from ml_platform.serving.scoring import ScoringModel, score_by_day
    from ml_platform.training import registry

    info, _ = champion
    s, feats, tx = env["settings"], env["features"], env["tx"]
    write_drift(env, n_shifted=0)
    native, _ = registry.load_native_model(info.version, model_name=MODEL)
    reversed_scores = ScoringModel(
        name=info.name,
        version=str(info.version),
        threshold=0.5,
        predict_proba=lambda x: 1.0 - native.predict_proba(x)[:, 1],
    )
    days = [env["end"] - timedelta(days=k) for k in (10, 9, 8)]
    keyed = tx[["transaction_id", "customer_id", "terminal_id"]].merge(feats, on="transaction_id")
    for key, frame in score_by_day(keyed, reversed_scores, days).items():
        lake.write_partition(frame, s.lake_dir, "batch_predictions", key)
    tx_day = tx["tx_datetime"].dt.date
    for d in days:
        part = tx[tx_day == d].reset_index(drop=True)
        lake.write_partition(part, s.lake_dir, "validated_transactions", d)
    outcomes = daily.outcomes_from_lake(s, days)
    table = daily.model_performance_table(outcomes, pd.DataFrame(), s.performance_window_days)
    lake.atomic_write_parquet(table, s.lake_dir / "model_performance" / lake.FILE_NAME)

    last = table.sort_values("tx_date").iloc[-1]
    assert last["trailing_days"] == s.performance_window_days
    ref = float(info.tags["valid_average_precision"])
    drop = ref - last["trailing_average_precision"]
    # the small test champion's reference AP is low: a margin below the measured drop
    margin = round(drop / 2, 4)
    assert drop > margin > 0
    mp = env["mp"]
    mp.setenv("ML_PLATFORM_RETRAIN_PERFORMANCE_MARGIN", str(margin))
    get_settings.cache_clear()
    try:
        result, _ = evaluate(RETRAINING, instance)
    finally:
        mp.delenv("ML_PLATFORM_RETRAIN_PERFORMANCE_MARGIN")
        get_settings.cache_clear()
    assert isinstance(result, dg.RunRequest)
    assert result.tags["ml_platform/trigger"] == "performance"
    assert f"margin {margin:.3f}" in result.tags["ml_platform/reason"]


def test_new_data_sensor(env, instance, tmp_path):

    skipped, _ = evaluate(NEW_DATA, instance)
    assert isinstance(skipped, dg.SkipReason) and "simulator" in skipped.skip_message

    mp = env["mp"]
    src = tmp_path / "incoming"
    src.mkdir()
    mp.setenv("ML_PLATFORM_SOURCE", "files")
    mp.setenv("ML_PLATFORM_SOURCE_DIR", str(src))
    get_settings.cache_clear()
    try:
        day = env["settings"].start_date + timedelta(days=2)
        path = src / f"{day}.parquet"
        env["tx"].head(5).to_parquet(path)
        (src / "2031-01-01.csv").write_text("x\n")  # outside the partition range
        (src / "notes.txt").write_text("ignored")
        result, ctx = evaluate(NEW_DATA, instance)
        assert [r.partition_key for r in result] == [day.isoformat()]
        assert result[0].tags["ml_platform/trigger"] == "new_file"

        again, ctx2 = evaluate(NEW_DATA, instance, cursor=ctx.cursor)
        assert isinstance(again, dg.SkipReason)

        mtime = path.stat().st_mtime + 10
        os.utime(path, (mtime, mtime))  # the file was replaced: one new run
        changed, _ = evaluate(NEW_DATA, instance, cursor=ctx2.cursor)
        assert [r.partition_key for r in changed] == [day.isoformat()]
        assert changed[0].run_key != result[0].run_key
    finally:
        mp.delenv("ML_PLATFORM_SOURCE")
        mp.delenv("ML_PLATFORM_SOURCE_DIR")
        get_settings.cache_clear()


def test_daily_schedule_runs_yesterday_inside_the_range_only():
    from datetime import UTC, datetime

    daily_schedule = built("fraud_daily_pipeline_schedule")
    s = get_settings()
    inside = datetime(s.start_date.year, s.start_date.month, s.start_date.day, 0, 30, tzinfo=UTC)
    inside += timedelta(days=3)
    run = daily_schedule(dg.build_schedule_context(scheduled_execution_time=inside))
    assert isinstance(run, dg.RunRequest)
    assert run.partition_key == (s.start_date + timedelta(days=2)).isoformat()
    late = datetime(s.end_date.year, s.end_date.month, s.end_date.day, 0, 30, tzinfo=UTC)
    late += timedelta(days=30)
    skip = daily_schedule(dg.build_schedule_context(scheduled_execution_time=late))
    assert isinstance(skip, dg.SkipReason) and "outside the partition range" in skip.skip_message
