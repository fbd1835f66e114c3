"""The automation stage of a use case that is not the flagship (flights, a regression scored
by MAE): its names, its jobs, its settings, its lake tables, its registered model, and the
retraining rule in the metric's direction. Real lake partitions (flights' real days, its
features, a drift table made by the drift code), a real registered champion (a ridge on
those days, in a test MLflow) and a real test Dagster instance."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.data import lake
from ml_platform.defs import names
from ml_platform.monitoring import performance as perf
from ml_platform.settings import get_settings

DAYS = [date(2013, 3, 1) + timedelta(days=i) for i in range(9)]
WINDOW = 3  # flights' performance_window_days


def _ctx(**overrides: str):
    """Flights' stage context; ``overrides``: its own settings (FLIGHTS_<NAME>=value)."""
    from ml_platform.defs.context import StageContext
    from ml_platform.use_cases import get_use_case, resolve_settings

    uc = get_use_case("flights")
    env = {f"{uc.env_prefix}{k.upper()}": v for k, v in overrides.items()}
    return StageContext(uc, get_settings(), resolve_settings(uc, env))


def _labeled_days(ctx) -> pd.DataFrame:
    """Flights' validated days with their features and labels, weather join included."""
    from ml_platform.data.validation import validate_events, validate_side_rows
    from ml_platform.features import build_features
    from ml_platform.training.datasets import join_labels
    from ml_platform.use_cases.flights import source

    uc = ctx.use_case
    events = [validate_events(source.load_day(d), d, uc)[0] for d in DAYS]
    weather = [validate_side_rows(source.load_weather_day(d), d, "weather", uc)[0] for d in DAYS]
    events = pd.concat(events, ignore_index=True)
    side = {"weather": pd.concat(weather, ignore_index=True)}
    return join_labels(build_features(events, use_case=uc, side_tables=side), events, use_case=uc)


def _register_champion(ctx, labeled: pd.DataFrame):
    """A ridge on the first days, validated on later ones, registered and promoted."""
    from ml_platform.features import feature_set
    from ml_platform.training import registry
    from ml_platform.training.datasets import Windows, split
    from ml_platform.training.metrics import validation_metrics
    from ml_platform.training.models import CandidateSet, fit_baseline

    uc, fs = ctx.use_case, feature_set(ctx.use_case)
    w = Windows(DAYS[0], DAYS[1], DAYS[4], DAYS[5], ctx.run.label_delay_days)
    train, valid = split(labeled, w, use_case=uc)
    model = fit_baseline(train, fs.columns, use_case=uc)
    m = validation_metrics(valid, model.score(valid), use_case=uc)
    cands = CandidateSet(model, None, m, None, model, "test baseline", 15.0, m, "late")
    info = registry.log_training_run(
        cands, train, valid, w, model_name=ctx.model_name, use_case=uc, feature_version=fs.version
    )
    registry.promote(info.version, model_name=ctx.model_name, who="test", why="champion")
    return model, registry.get_model_info("champion", model_name=ctx.model_name)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Nine real March days of flights: features in the lake, a registered champion."""
    from ml_platform.features import feature_set

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_PLATFORM_DATA_DIR", str(tmp_path_factory.mktemp("flights") / "data"))
        get_settings.cache_clear()
        ctx = _ctx()
        labeled = _labeled_days(ctx)
        time = ctx.use_case.spec.event_schema.event_time
        table = ctx.table(names.EVENT_FEATURES)
        for day, frame in labeled.groupby(labeled[time].dt.date):
            lake.write_partition(frame, ctx.settings.lake_dir, table, day)
        model, info = _register_champion(ctx, labeled)
        cols = feature_set(ctx.use_case).columns
        yield {"ctx": ctx, "labeled": labeled, "model": model, "info": info, "cols": cols}
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _write_performance(world, shift: float) -> float:
    """flights' ``model_performance`` table: the champion's batch predictions (plus
    ``shift`` minutes) pooled over the trailing 3 labeled days, per day; returns the last
    pooled MAE."""
    from ml_platform.training.metrics import mean_absolute_error

    ctx, labeled, model = world["ctx"], world["labeled"], world["model"]
    label = ctx.use_case.spec.label.column
    day = labeled[ctx.use_case.spec.event_schema.event_time].dt.date
    scored = [d for d in DAYS[4:8]]
    rows = []
    for i, d in enumerate(scored):
        window = scored[max(0, i - WINDOW + 1) : i + 1]
        part = labeled[day.isin(window)]
        mae = mean_absolute_error(part[label].to_numpy(), model.score(part) + shift)
        rows.append((d, str(world["info"].version), "batch", mae, len(window)))
    cols = [perf.DAY, perf.MODEL_VERSION, perf.SOURCE, "trailing_mean_absolute_error"]
    table = pd.DataFrame(rows, columns=[*cols, "trailing_days"])
    s = ctx.settings
    lake.atomic_write_parquet(
        table, s.lake_dir / ctx.table(names.MODEL_PERFORMANCE) / lake.FILE_NAME
    )
    return rows[-1][3]


def _write_drift(world, n_shifted: int):
    """flights' ``drift_report`` partition of the last day, made by the drift code: the
    champion's training days against a sample of themselves, ``n_shifted`` features moved."""
    from ml_platform.monitoring import daily
    from ml_platform.monitoring.drift import compute_drift

    ctx, labeled, cols = world["ctx"], world["labeled"], world["cols"]
    reference = labeled[cols].reset_index(drop=True)
    current = reference.sample(400, random_state=0).reset_index(drop=True)
    for col in cols[:n_shifted]:
        current[col] = current[col] + 5 * (reference[col].std() or 1.0) + 1.0
    result = compute_drift(reference, current, cols)
    frame = daily.drift_frame(result, DAYS[-1])
    lake.write_partition(frame, ctx.settings.lake_dir, ctx.table(names.DRIFT_REPORT), DAYS[-1])
    return result


def _started(instance, job: str) -> dg.DagsterRun:
    """A run of ``job`` the instance sees as started."""
    run = dg.DagsterRun(job_name=job, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED)
    return instance.add_run(run)


def _evaluate(ctx, instance):
    from ml_platform.defs.automation.sensors import build_sensors

    sensor = next(s for s in build_sensors(ctx) if s.name == ctx.name(names.RETRAINING_SENSOR))
    return sensor(dg.build_sensor_context(instance=instance))


def test_the_stage_is_named_for_its_use_case_and_launches_its_jobs(world):
    from ml_platform.defs.automation.schedules import build_jobs, build_schedules
    from ml_platform.defs.automation.sensors import build_sensors

    ctx = world["ctx"]
    sensors = {s.name: s.job_name for s in build_sensors(ctx)}
    assert sensors == {
        "flights_retraining_sensor": "flights_training_job",
        "flights_new_data_sensor": "flights_daily_pipeline_job",
    }
    assert [(s.name, s.job_name) for s in build_schedules(ctx)] == [
        ("flights_daily_pipeline_schedule", "flights_daily_pipeline_job")
    ]
    assert {j.name for j in build_jobs(ctx)} == {"flights_spine_job", "flights_daily_pipeline_job"}
    description = build_sensors(ctx)[0].description
    assert "FLIGHTS_DRIFT_SHARE_THRESHOLD" in description and "labeled MAE" in description


def test_it_is_left_out_with_the_reason_of_the_stage_it_needs(world):
    from ml_platform.defs import unsupported_reason
    from ml_platform.defs.automation import NEEDS, unsupported
    from ml_platform.defs.context import fraud_context

    ctx = world["ctx"]
    missing = [stage for stage in NEEDS if unsupported_reason(stage, ctx)]
    if not missing:  # both built for flights: automation is too
        assert unsupported(ctx) is None
    else:
        first = missing[0]
        assert unsupported(ctx) == (
            f"needs the {first} stage, left out: {unsupported_reason(first, ctx)}"
        )
    assert unsupported(fraud_context()) is None


def test_a_higher_mae_than_the_reference_triggers_and_a_lower_one_does_not(world, instance):
    info = world["info"]
    reference = float(info.tags["valid_mean_absolute_error"])
    _write_drift(world, n_shifted=0)
    good = _write_performance(world, shift=0.0)
    quiet = _evaluate(_ctx(retrain_performance_margin="1000"), instance)
    assert isinstance(quiet, dg.SkipReason) and quiet.skip_message.startswith("[none]")
    assert f"labeled MAE {good:.3f} vs reference {reference:.3f}" in quiet.skip_message

    bad = _write_performance(world, shift=60.0)  # a broken model: an hour off
    assert bad > reference + 1.0
    run = _evaluate(_ctx(retrain_performance_margin="1.0"), instance)
    assert isinstance(run, dg.RunRequest)
    assert run.tags["ml_platform/trigger"] == "performance"
    assert run.tags["ml_platform/use_case"] == "flights"
    assert run.run_key == f"retrain-{DAYS[-1]}-performance"
    assert (
        f"labeled MAE {bad:.3f} is {bad - reference:.3f} above the champion's reference "
        f"{reference:.3f} (margin 1.000)" in run.tags["ml_platform/reason"]
    )
    # the same numbers under a margin wider than the gap: no retraining
    wide = _evaluate(_ctx(retrain_performance_margin=str(np.ceil(bad - reference))), instance)
    assert isinstance(wide, dg.SkipReason) and wide.skip_message.startswith("[none]")


def test_its_drift_table_and_training_job_are_its_own(world, instance):
    _write_performance(world, shift=0.0)
    drift = _write_drift(world, n_shifted=8)
    threshold = 0.3
    assert drift.drift_share > threshold
    result = _evaluate(_ctx(drift_share_threshold=str(threshold)), instance)
    assert isinstance(result, dg.RunRequest) and result.tags["ml_platform/trigger"] == "drift"
    assert (
        f"{drift.drift_share:.3f} > threshold {threshold:.3f}" in result.tags["ml_platform/reason"]
    )

    # fraud's training run does not block flights; flights' own does
    fraud_run = _started(instance, "fraud_training_job")
    assert isinstance(_evaluate(_ctx(), instance), dg.RunRequest)
    own = _started(instance, "flights_training_job")
    try:
        blocked = _evaluate(_ctx(), instance)
        assert isinstance(blocked, dg.SkipReason)
        assert blocked.skip_message.startswith("[in_progress]")
    finally:
        instance.report_run_canceled(own)
        instance.report_run_canceled(fraud_run)


def test_the_new_data_sensor_watches_its_declared_source(world, instance):
    from ml_platform.defs.automation.sensors import build_sensors, watched_folder

    ctx = world["ctx"]
    assert watched_folder(ctx) == ("package", ctx.resolved.source_dir)
    sensor = next(s for s in build_sensors(ctx) if s.name == "flights_new_data_sensor")
    skipped = sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message == "source is 'package': no external files to watch"
