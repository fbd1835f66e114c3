"""Training, batch scoring and monitoring inputs on a 2-worker Dask cluster (processes).

Every Dask path is compared with the local one it replaces: the baseline solves the same
problem as scikit-learn's, LightGBM stops where its validation metric peaked, the scores
and the gathered monitoring inputs equal the local ones exactly.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ml_platform.data import lake
from ml_platform.data.simulator import generate_days
from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION, build_features_for_days
from ml_platform.monitoring import daily, dask_gather
from ml_platform.monitoring import performance as perf
from ml_platform.monitoring.drift import sample_reference
from ml_platform.serving import dask_scoring, scoring
from ml_platform.settings import Settings
from ml_platform.training import dask_fit, datasets, metrics, models

pytest.importorskip("distributed")

END = date(2025, 4, 30)
WINDOWS = datasets.platform_windows(END, train_days=10, valid_days=5, label_delay=7)
COLS = list(FEATURE_COLUMNS)
FAST = {"max_bin": 63, "learning_rate": 0.2}
#: Few leaves: each split is a round trip between the LightGBM machines.
SMALL_TREES = {**FAST, "num_leaves": 4, "max_bin": 15, "min_child_samples": 20}


@pytest.fixture(scope="module")
def client(dask_client):
    """The session's 2-worker LocalCluster (``conftest.dask_client``)."""
    return dask_client


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small lake (transactions + features per day) and its labelled windows."""
    raw = generate_days(date(2025, 3, 25), END, seed=5, n_customers=400, n_terminals=800)
    days = sorted({d.date() for d in raw["tx_datetime"].dt.normalize()})
    feats = build_features_for_days(raw, days)
    labeled = datasets.join_labels(feats, raw)
    train, valid = datasets.split(labeled, WINDOWS)
    lake_dir = tmp_path_factory.mktemp("dask_lake") / "lake"
    for table, frame in (("validated_transactions", raw), ("transaction_features", feats)):
        for day, part in lake.split_by_day(frame, days).items():
            lake.write_partition(part, lake_dir, table, day)
    return {"train": train, "valid": valid, "lake_dir": lake_dir, "days": days}


def test_baseline_on_dask_solves_the_same_problem_as_scikit_learn(client, world):
    train, valid = world["train"], world["valid"]
    parts = dask_fit.scatter_frame(client, train, [*COLS, "tx_fraud"], n_parts=5)
    holders = client.who_has(parts)
    assert len(holders) == 5 and len(set().union(*holders.values())) == 2, "on both workers"
    on_dask = dask_fit.fit_baseline(client, parts, COLS)
    x, y = models.matrix(train, COLS), train["tx_fraud"].to_numpy()
    scaler, ref = on_dask.model[0], StandardScaler().fit(x)
    np.testing.assert_allclose(scaler.mean_, ref.mean_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scaler.scale_, ref.scale_, rtol=1e-10)
    # the optimum of models.fit_baseline's objective (C * log loss + ||w||^2 / 2), as
    # scikit-learn's exact Newton solver finds it
    exact = LogisticRegression(C=models.BASELINE_C, solver="newton-cholesky", tol=1e-12)
    exact.fit(ref.transform(x), y)
    np.testing.assert_allclose(on_dask.model[-1].coef_, exact.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(on_dask.model[-1].intercept_, exact.intercept_, rtol=1e-6)
    expected = exact.predict_proba(ref.transform(models.matrix(valid, COLS)))[:, 1]
    np.testing.assert_allclose(on_dask.score(valid), expected, rtol=1e-5, atol=1e-9)
    assert on_dask.kind == models.BASELINE and on_dask.params[dask_fit.COMPUTE_PARAM] == "dask"


def test_ridge_baseline_on_dask_equals_scikit_learn(client):
    from ml_platform.use_cases import get_use_case

    flights = get_use_case("flights")
    label = datasets.Roles.of(flights).label
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 4)) * [1, 10, 100, 0.1] + [0, 5, -50, 2]
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame[label] = x @ [1.0, -0.2, 0.03, 4.0] + rng.normal(size=3000)
    parts = dask_fit.scatter_frame(client, frame, [*"abcd", label], n_parts=3)
    on_dask = dask_fit.fit_baseline(client, parts, list("abcd"), use_case=flights)
    local = models.fit_baseline(frame, list("abcd"), use_case=flights)
    np.testing.assert_allclose(on_dask.score(frame), local.score(frame), rtol=1e-9, atol=1e-9)


def test_a_missing_train_column_or_an_empty_set_is_named(client, world):
    with pytest.raises(ValueError, match="train.tx_fraud: column required"):
        dask_fit.scatter_frame(client, world["train"].drop(columns="tx_fraud"), [*COLS, "tx_fraud"])
    with pytest.raises(ValueError, match="train: no rows"):
        dask_fit.scatter_frame(client, world["train"].iloc[:0], [*COLS, "tx_fraud"])


def test_lightgbm_on_dask_stops_where_validation_peaks_and_ships_a_local_booster(client, world):
    import lightgbm as lgb

    train, valid = world["train"], world["valid"]
    cands = models.train_candidates(
        train, valid, COLS, threads=1, lgb_params=SMALL_TREES, client=client, dask_min_rows=1
    )
    gbm = cands.lightgbm
    assert isinstance(gbm.model, lgb.Booster) and gbm.params[dask_fit.COMPUTE_PARAM] == "dask"
    assert cands.baseline.params[dask_fit.COMPUTE_PARAM] == "dask"
    # the booster keeps the rounds up to the best one, which no earlier round matches
    yv, x = valid["tx_fraud"].to_numpy(), models.matrix(valid, COLS)
    assert gbm.model.current_iteration() == gbm.best_iteration < models.MAX_ROUNDS
    ap = [
        metrics.average_precision(yv, gbm.model.predict(x, num_iteration=i))
        for i in range(1, gbm.best_iteration + 1)
    ]
    assert ap[-1] > max(ap[:-1], default=-1.0)
    assert cands.lightgbm_metrics["average_precision"] == pytest.approx(ap[-1])
    assert gbm.score(valid).shape == (len(valid),)


def test_validation_stopper_stops_where_lightgbm_early_stopping_does(world):
    """The callback the workers run, in one process: the same round as LightGBM's own."""
    import lightgbm as lgb

    train, valid = world["train"], world["valid"]
    params = {**models.lightgbm_params(), **FAST, "num_threads": 1}
    x, y = models.matrix(train, COLS), train["tx_fraud"].to_numpy()
    xv, yv = models.matrix(valid, COLS), valid["tx_fraud"].to_numpy()
    ap = metrics.task_metrics().primary
    stopper = dask_fit.ValidationStopper((xv, yv), ap, binary=True)
    ours = lgb.train(params, lgb.Dataset(x, y), models.MAX_ROUNDS, callbacks=[stopper])
    dtrain = lgb.Dataset(x, y)
    theirs = lgb.train(
        {**params, "metric": "average_precision"},
        dtrain,
        models.MAX_ROUNDS,
        valid_sets=[lgb.Dataset(xv, yv, reference=dtrain)],
        callbacks=[lgb.early_stopping(models.EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    assert ours.best_iteration == theirs.best_iteration
    assert len(stopper.history) == ours.best_iteration + models.EARLY_STOPPING_ROUNDS
    assert max(stopper.history) == stopper.history[ours.best_iteration - 1]


def test_below_the_size_setting_training_stays_local(client, world):
    train, valid = world["train"], world["valid"]
    cands = models.train_candidates(
        train,
        valid,
        COLS,
        threads=1,
        lgb_params=SMALL_TREES,
        client=client,
        dask_min_rows=len(train) + 1,
    )
    assert dask_fit.COMPUTE_PARAM not in cands.baseline.params
    assert dask_fit.COMPUTE_PARAM not in cands.lightgbm.params


@pytest.fixture(scope="module")
def scored(client, world):
    """A champion's predictions of the last 10 days, scored locally into the lake."""
    train, valid = world["train"], world["valid"]
    booster = models.fit_lightgbm(train, COLS, valid, params=SMALL_TREES, threads=1).model
    model = scoring.ScoringModel(
        "fraud_detector", "3", 0.4, scoring.native_predict_fn(booster), booster, FEATURE_VERSION
    )
    days = world["days"][-10:]
    feats = lake.read_partitions(world["lake_dir"], "transaction_features", days)
    local = scoring.score_by_day(feats, model, days)
    lake.write_partitions(local, world["lake_dir"], "batch_predictions")
    return model, days, local


def test_batch_scoring_per_partition_on_the_workers_equals_the_local_path(client, world, scored):
    model, days, local = scored
    lake_dir = world["lake_dir"]
    on_dask = dask_scoring.score_days(client, model, lake_dir, "transaction_features", days)
    assert list(on_dask) == sorted(local)
    for day, frame in local.items():
        pd.testing.assert_frame_equal(on_dask[day], frame)
    counts = dask_scoring.score_days(
        client, model, lake_dir, "transaction_features", days[:2], write_table="dask_predictions"
    )
    for day in days[:2]:
        key = day.isoformat()
        written = lake.read_partitions(lake_dir, "dask_predictions", [key])
        pd.testing.assert_frame_equal(written, local[key])
        flagged = int(written["is_fraud"].sum())
        assert counts[key] == {"day": key, "rows": len(written), "flagged": flagged}
    with pytest.raises(FileNotFoundError, match="transaction_features: partition 2031-01-01"):
        dask_scoring.score_days(client, model, lake_dir, "transaction_features", ["2031-01-01"])


def test_drift_reference_sample_from_the_workers_is_the_local_sample(client, world):
    days = WINDOWS.train_days
    lake_dir, table = world["lake_dir"], "transaction_features"
    frame = lake.read_partitions(lake_dir, table, days, missing_ok=True)
    local = sample_reference(frame[COLS], 700, seed=4).reset_index(drop=True)
    gathered = dask_gather.reference_sample(client, lake_dir, table, days, COLS, 700, seed=4)
    pd.testing.assert_frame_equal(gathered, local)
    everything = dask_gather.reference_sample(client, lake_dir, table, days[:1], COLS, 10**6)
    pd.testing.assert_frame_equal(everything, lake.read_partitions(lake_dir, table, days[:1])[COLS])


def test_labelled_performance_aggregated_on_the_workers_equals_the_local_one(client, world, scored):
    _, days, _ = scored
    s = Settings(data_dir=world["lake_dir"].parent)
    local = perf.daily_performance(daily.outcomes_from_lake(s, days))
    pd.testing.assert_frame_equal(dask_gather.daily_performance(client, s, days), local)
    pd.testing.assert_frame_equal(
        dask_gather.outcomes(client, s, days), daily.outcomes_from_lake(s, days)
    )
