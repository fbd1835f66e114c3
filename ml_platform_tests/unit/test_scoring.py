"""Serving core: request validation, shared scoring, prediction log, batch asset idempotency."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ml_platform.serving.schemas import Transaction
from ml_platform.serving.scoring import SINGLE_ROW_FAST_PATH, native_predict_fn
from ml_platform_tests.service import support

GOOD = {
    "transaction_id": 7,
    "tx_datetime": "2025-05-15T12:30:00",
    "customer_id": 3,
    "terminal_id": 9,
    "tx_amount": 57.3,
}


# --- request validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"customer_id": None}, "customer_id", "int_type"),
        ({"transaction_id": "7"}, "transaction_id", "int_type"),
        ({"terminal_id": 1.5}, "terminal_id", "int_type"),
        ({"tx_amount": -1.0}, "tx_amount", "greater_than_equal"),
        ({"tx_amount": "12"}, "tx_amount", "float_type"),
        ({"tx_amount": True}, "tx_amount", "float_type"),
        ({"tx_datetime": "yesterday"}, "tx_datetime", "datetime_parsing"),
        ({"tx_datetime": "2025-13-01T00:00:00"}, "tx_datetime", "datetime_from_date_parsing"),
        ({"customer_id": -4}, "customer_id", "greater_than_equal"),
        ({"transaction_id": 2**63}, "transaction_id", "less_than_equal"),
    ],
)
def test_bad_field_is_rejected_naming_field(change: dict, field: str, kind: str) -> None:
    body = json.dumps({**GOOD, **change})
    with pytest.raises(ValidationError) as err:
        Transaction.model_validate_json(body)
    errors = err.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert errors[0]["type"].split("_")[0] == kind.split("_")[0]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_amount_is_rejected(token: str) -> None:
    body = json.dumps(GOOD).replace("57.3", token)
    with pytest.raises(ValidationError) as err:
        Transaction.model_validate_json(body)
    assert err.value.errors()[0]["loc"] == ("tx_amount",)


def test_missing_field_and_not_json() -> None:
    body = {k: v for k, v in GOOD.items() if k != "terminal_id"}
    with pytest.raises(ValidationError) as err:
        Transaction.model_validate_json(json.dumps(body))
    assert err.value.errors()[0]["loc"] == ("terminal_id",)
    with pytest.raises(ValidationError) as err:
        Transaction.model_validate_json(b"transaction_id=7")
    assert err.value.errors()[0]["type"] == "json_invalid"


def test_valid_transaction_and_timezone_becomes_naive_utc() -> None:
    tx = Transaction.model_validate_json(json.dumps({**GOOD, "tx_amount": 0}))
    assert tx.tx_amount == 0.0 and tx.tx_datetime == datetime(2025, 5, 15, 12, 30)
    aware = Transaction.model_validate_json(
        json.dumps({**GOOD, "tx_datetime": "2025-05-15T14:30:00+02:00", "extra": "ignored"})
    )
    assert aware.tx_datetime == datetime(2025, 5, 15, 12, 30)
    assert set(aware.as_record()) == {
        "transaction_id",
        "tx_datetime",
        "customer_id",
        "terminal_id",
        "tx_amount",
    }


# --- shared scoring --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(session_dir: Path) -> support.Platform:
    return support.build_platform(session_dir / "serving_platform")


def test_score_features_decisions_and_columns(platform: support.Platform) -> None:
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.scoring import PREDICTION_COLUMNS, score_features

    model = support.scoring_model(platform, platform.champion, "5")
    feats = platform.features.tail(300)
    out = score_features(feats, model)
    assert tuple(out.columns) == PREDICTION_COLUMNS
    expected = platform.champion.chosen.score(feats[FEATURE_COLUMNS].to_numpy())
    np.testing.assert_allclose(out["score"], expected, rtol=0, atol=1e-12)
    assert (out["is_fraud"] == (out["score"] >= model.threshold)).all()
    assert out["is_fraud"].any() and not out["is_fraud"].all()
    assert (out["model_version"] == "5").all() and (out["threshold"] == model.threshold).all()
    with pytest.raises(ValueError, match="tx_amount"):
        score_features(feats.drop(columns="tx_amount"), model)


def test_score_transactions_end_to_end_equals_feature_table(platform: support.Platform) -> None:
    """From raw history (look-back) or from the feature table: the same predictions."""
    from ml_platform.serving.scoring import score_by_day, score_transactions

    model = support.scoring_model(platform, platform.champion)
    days = ["2025-05-14", "2025-05-15"]
    a = score_transactions(platform.transactions, model, days, support.LABEL_DELAY)
    b = score_by_day(platform.features, model, days)
    for d in days:
        assert len(a[d]) == (platform.transactions["tx_datetime"].dt.date.astype(str) == d).sum()
        pd.testing.assert_frame_equal(a[d], b[d])
        assert a[d]["tx_datetime"].is_monotonic_increasing


def test_native_single_row_scoring_is_fast(session_dir: Path) -> None:
    """A LightGBM champion loaded from the registry scores one row on the fast path."""
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.scoring import load_model, time_single_rows, uses_single_row_fast_path

    p, _, _ = support.registered_platform(session_dir / "serving_platform")
    with support.platform_env(p.data_dir):
        model = load_model("champion", model_name=support.MODEL)
    assert type(model.native).__name__ == "Booster"
    assert uses_single_row_fast_path(model)
    baseline = support.scoring_model(p, p.champion)
    baseline = dataclasses.replace(
        baseline,
        native=p.champion.baseline.model,
        predict_proba=native_predict_fn(p.champion.baseline.model),
    )
    assert not uses_single_row_fast_path(baseline)  # scikit-learn: predict_proba only
    figures = time_single_rows(model, p.features[FEATURE_COLUMNS].to_numpy()[:200], 300)
    assert figures["p50_us"] < 1000  # ~30 µs on an idle core; generous for a shared machine


def test_fast_path_fallback_is_logged_and_unexpected_errors_propagate(caplog) -> None:
    """A booster the fast path cannot serve falls back with a WARNING naming the reason."""
    import lightgbm as lgb

    from ml_platform.serving.lgbm_single_row import SingleRowPredictor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    multiclass = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, rng.integers(0, 3, size=60)),
        num_boost_round=2,
    )
    with caplog.at_level("WARNING", logger="ml_platform.serving.lgbm_single_row"):
        assert SingleRowPredictor.create(multiclass) is None
        fn = native_predict_fn(multiclass)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "fast path unavailable" in warnings[0].getMessage()
    assert "3 outputs per row" in warnings[0].getMessage()
    assert getattr(fn, SINGLE_ROW_FAST_PATH) is False
    np.testing.assert_array_equal(fn(x[:1]), multiclass.predict(x[:1], num_threads=1))
    with pytest.raises(AttributeError):
        SingleRowPredictor.create(object())  # not a booster: a bug, not a fallback


def test_single_row_fast_path_is_bit_identical(platform: support.Platform) -> None:
    """The API's one-row LightGBM path gives exactly Booster.predict's scores."""
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.lgbm_single_row import SingleRowPredictor

    booster = platform.champion.chosen.model
    model = support.scoring_model(platform, platform.champion)
    x = platform.features[FEATURE_COLUMNS].to_numpy(dtype=np.float64)[:400].copy()
    x[::7, 3] = np.nan  # missing values take the same default branches
    fast = SingleRowPredictor(booster)
    reference = booster.predict(x, num_threads=1)
    one_by_one = np.array([fast.predict(x[i : i + 1])[0] for i in range(len(x))])
    assert np.array_equal(one_by_one, reference)
    through_model = np.array([model.score(x[i])[0] for i in range(len(x))])
    assert np.array_equal(through_model, reference)
    assert np.array_equal(model.score(x), reference)  # several rows: Booster.predict
    # one float64 row of the right width takes the fast path; anything else does not
    assert fast.applies(x[:1]) and fast.applies(x[7:8])
    assert not fast.applies(x[:2]) and not fast.applies(x[:1, :-1])
    assert not fast.applies(x[:1].astype(np.float32))
    fast.close()
    fast.close()  # idempotent
    assert not fast.applies(x[:1])
    assert np.array_equal(booster.predict(x[:5], num_threads=1), reference[:5])  # booster intact


def test_incompatible_model_is_refused(platform: support.Platform) -> None:
    from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION
    from ml_platform.serving.scoring import check_features

    model = support.scoring_model(platform, platform.champion)
    check_features(model, FEATURE_COLUMNS, FEATURE_COLUMNS, FEATURE_VERSION)
    with pytest.raises(ValueError, match="feature_columns"):
        check_features(model, FEATURE_COLUMNS[:-1], FEATURE_COLUMNS, FEATURE_VERSION)
    with pytest.raises(ValueError, match="feature_version"):
        check_features(model, FEATURE_COLUMNS, FEATURE_COLUMNS, "0123456789abcdef")


# --- prediction log --------------------------------------------------------------------------


_REQUEST_FIELDS = ("transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount")


def _request(rows: pd.DataFrame, i: int) -> dict:
    return {k: rows.loc[i, k] for k in _REQUEST_FIELDS}


def _entry(rows: pd.DataFrame, x: np.ndarray, i: int, model, shadow=None):
    """The log entry the API hands over for row ``i`` (scored by ``model``)."""
    from ml_platform.serving.prediction_log import LogEntry

    score = float(model.score(x[i])[0])
    return LogEntry(
        time.time(),
        uuid.uuid4().hex,
        "/predict",
        _request(rows, i),
        x[i],
        score,
        model,
        1.0,
        shadow=shadow,
    )


def test_request_path_does_not_wait_for_the_log_write(
    platform: support.Platform, tmp_path: Path
) -> None:
    """With the log database locked by another writer, submit still returns at once; the
    rows arrive once the lock is released."""
    import sqlite3

    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.prediction_log import PredictionLogWriter, read_prediction_log

    champion = support.scoring_model(platform, platform.champion, "1")
    rows = platform.features.tail(20).reset_index(drop=True)
    x = rows[FEATURE_COLUMNS].to_numpy()
    entries = [_entry(rows, x, i, champion) for i in range(len(rows))]
    path = tmp_path / "locked.sqlite"
    writer = PredictionLogWriter(path, FEATURE_COLUMNS, flush_seconds=0.01)
    # timeout: wait out the writer thread's own short start-up transaction on the file
    lock = sqlite3.connect(path, isolation_level=None, timeout=10)
    lock.execute("BEGIN IMMEDIATE")  # holds the write lock: every insert must wait
    try:
        submit_seconds = []
        for e in entries:
            t = time.perf_counter()
            writer.submit(e)
            submit_seconds.append(time.perf_counter() - t)
            time.sleep(0.01)  # the writer thread wakes up and blocks on the lock meanwhile
        assert max(submit_seconds) < 0.05  # a blocked insert would hold submit for 30 s
        assert not writer.flush(timeout=0.3)  # the writes really are waiting on the lock
        assert lock.execute("SELECT COUNT(*) FROM prediction_log").fetchone() == (0,)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert writer.flush()
    writer.close()
    log = read_prediction_log(path)
    assert log["request_id"].tolist() == [e.request_id for e in entries]
    assert writer.written == len(entries) and writer.dropped == 0


def test_prediction_log_is_async_appends_and_scores_shadow(
    platform: support.Platform, tmp_path: Path
) -> None:
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.prediction_log import (
        LogEntry,
        PredictionLogWriter,
        read_prediction_log,
    )

    champion = support.scoring_model(platform, platform.champion, "1")
    shadow = support.scoring_model(platform, platform.challenger, "2")
    rows = platform.features.tail(50).reset_index(drop=True)
    x = rows[FEATURE_COLUMNS].to_numpy()
    path = tmp_path / "log.sqlite"
    writer = PredictionLogWriter(path, FEATURE_COLUMNS, flush_seconds=0.05)
    for i in range(len(rows)):
        writer.submit(_entry(rows, x, i, champion, shadow=shadow if i % 2 == 0 else None))
    tx = _request(rows, 0)
    assert writer.flush()
    log = read_prediction_log(path)
    main, shadows = log[log["role"] == "champion"], log[log["role"] == "shadow"]
    assert len(main) == 50 and len(shadows) == 25 and writer.dropped == 0
    np.testing.assert_allclose(main[FEATURE_COLUMNS].to_numpy(), x, rtol=0, atol=1e-12)
    assert (main["model_version"] == "1").all() and (shadows["model_version"] == "2").all()
    np.testing.assert_allclose(
        shadows["score"].to_numpy(), shadow.score(x[::2]), rtol=0, atol=1e-12
    )
    assert set(shadows["request_id"]) <= set(main["request_id"])
    # append-only: a second writer adds rows, never rewrites them
    writer.close()
    again = PredictionLogWriter(path, FEATURE_COLUMNS, flush_seconds=0.05)
    again.submit(LogEntry(time.time(), "r", "/predict", tx, x[0], 0.5, champion, 1.0))
    again.close()
    log2 = read_prediction_log(path)
    assert len(log2) == 76 and log2["id"].iloc[:75].tolist() == log["id"].tolist()
    assert len(read_prediction_log(path, role="shadow")) == 25
    assert len(read_prediction_log(tmp_path / "absent.sqlite")) == 0
    with pytest.raises(ValueError, match="role"):
        read_prediction_log(path, role="primary")


# --- batch asset -----------------------------------------------------------------------------


def test_batch_predictions_asset_is_idempotent(session_dir: Path) -> None:
    import dagster as dg

    from ml_platform.data import lake
    from ml_platform.defs.resources import build_resources
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.scoring import load_model
    from ml_platform_tests.dagster_support import assets_of, fraud, names

    p, champion, _ = support.registered_platform(session_dir / "serving_platform")
    with support.platform_env(p.data_dir):
        from ml_platform.settings import get_settings

        lake_dir = get_settings().lake_dir
        resources = build_resources(get_settings())
        instance = dg.DagsterInstance.ephemeral()
        ctx, defs = fraud(names.INGESTION, names.FEATURES, names.SERVING)
        batch_predictions = ctx.key(names.BATCH_PREDICTIONS)
        key = "2025-05-14"
        target = lake.partition_path(lake_dir, "batch_predictions", key)
        outputs = []
        for _ in range(2):
            result = dg.materialize(
                assets_of(defs),
                selection=[batch_predictions],
                partition_key=key,
                resources=resources,
                instance=instance,
            )
            assert result.success
            outputs.append(target.read_bytes())
        assert outputs[0] == outputs[1]  # same champion -> the identical partition file
        preds = pd.read_parquet(target)
        feats = lake.read_partitions(lake_dir, "transaction_features", [key])
        assert sorted(preds["transaction_id"]) == sorted(feats["transaction_id"])
        model = load_model("champion", model_name=ctx.model_name)
        assert model.version == champion
        expected = model.score(
            feats.set_index("transaction_id")
            .loc[preds["transaction_id"], FEATURE_COLUMNS]
            .to_numpy()
        )
        np.testing.assert_allclose(preds["score"], expected, rtol=0, atol=1e-12)
        assert (preds["model_version"] == champion).all()
        meta = result.asset_materializations_for_node(ctx.name(names.BATCH_PREDICTIONS))[0]
        meta = meta.metadata
        assert meta["model_version"].value == champion


def test_service_module_keeps_heavy_libraries_off_the_serving_path() -> None:
    """Importing the BentoML service pulls in neither Dagster, MLflow nor Evidently."""
    import subprocess
    import sys

    code = (
        "import sys, ml_platform.serving.service\n"
        "print([m for m in ('dagster', 'mlflow', 'evidently') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_regressor_scores_its_predicted_value_and_flags_strictly_above() -> None:
    """The ridge baseline has no predict_proba: its scores are its predictions, and a
    regression's flag is value > bound (a value exactly at the bound is not flagged)."""
    from sklearn.linear_model import Ridge

    from ml_platform.serving.scoring import ScoringModel

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    ridge = Ridge(alpha=1e-9).fit(x, 10 * x[:, 0])
    fn = native_predict_fn(ridge)
    np.testing.assert_allclose(fn(x), [0, 10, 20, 30], atol=1e-6)
    flag = ScoringModel("flights_delay", "1", 15.0, fn, strict=True)
    alert = ScoringModel("fraud_detector", "1", 15.0, fn)
    scores = np.array([14.0, 15.0, 16.0])
    assert flag.decide(scores).tolist() == [False, False, True]
    assert alert.decide(scores).tolist() == [False, True, True]


def test_predictions_are_keyed_by_the_use_cases_own_columns() -> None:
    """A use case's batch predictions carry its event id, time and entity keys (strings kept
    as strings) and its decision named like its API answer; the flagship's are unchanged."""
    from ml_platform.features.definitions import feature_set
    from ml_platform.serving.scoring import (
        PREDICTION_COLUMNS,
        ScoringModel,
        prediction_columns,
        score_by_day,
    )

    assert prediction_columns("fraud") == PREDICTION_COLUMNS
    fs = feature_set("flights")
    n = 4
    feats = pd.DataFrame(
        {
            fs.event_id: np.array([13, 11, 12, 10], dtype=np.int64),
            fs.event_time: pd.to_datetime(
                ["2013-01-02 08:00", "2013-01-01 09:00", "2013-01-01 09:00", "2013-01-01 05:00"]
            ),
            **{col: [f"{col}{i}" for i in range(n)] for col in fs.entity_columns},
            **{col: np.arange(n, dtype=float) for col in fs.columns},
        }
    )
    value = ScoringModel("flights_delay", "3", 15.0, lambda x: 10.0 * x[:, 0], strict=True)
    parts = score_by_day(feats, value, ["2013-01-01", "2013-01-02"], use_case="flights")
    day1, day2 = parts["2013-01-01"], parts["2013-01-02"]
    assert tuple(day1.columns) == prediction_columns("flights")
    assert prediction_columns("flights")[len(fs.entities) + 3] == "late"
    # sorted by time, then id; the string keys kept as strings
    assert day1[fs.event_id].tolist() == [10, 11, 12]
    assert day1[fs.entity_columns[0]].tolist() == [f"{fs.entity_columns[0]}{i}" for i in (3, 1, 2)]
    assert str(day1[fs.entity_columns[0]].dtype) == "string"
    # the predicted value and the strict flag: 10, 20 are not late, 30 is (15 is the bound)
    assert day1["score"].tolist() == [30.0, 10.0, 20.0]
    assert day1["late"].tolist() == [True, False, True]
    assert day2["late"].tolist() == [False] and len(day2) == 1
