"""Prediction-log writer under stress: a full queue drops (counted), a failing shadow is counted.

Real parts only: a SQLite file, the writer thread, LightGBM boosters as champion and
shadow (the failing shadow was trained on fewer features than the rows it is given).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from ml_platform.features import FEATURE_COLUMNS
from ml_platform.serving.prediction_log import (
    TABLE,
    LogEntry,
    PredictionLogWriter,
    read_prediction_log,
)
from ml_platform.serving.scoring import ScoringModel, native_predict_fn

N_FEATURES = len(FEATURE_COLUMNS)


def _model(version: str, n_features: int) -> ScoringModel:
    """A small real LightGBM model on ``n_features`` random columns."""
    rng = np.random.default_rng(int(version))
    x = rng.normal(size=(300, n_features))
    y = (x[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=5)
    return ScoringModel(
        name="fraud_detector",
        version=version,
        threshold=0.5,
        predict_proba=native_predict_fn(booster),
        native=booster,
    )


@pytest.fixture(scope="module")
def champion() -> ScoringModel:
    return _model("1", N_FEATURES)


def _entry(i: int, model: ScoringModel, shadow: ScoringModel | None = None) -> LogEntry:
    x = np.random.default_rng(i).normal(size=N_FEATURES)
    tx = {
        "transaction_id": i,
        "tx_datetime": "2025-05-15T10:00:00",
        "customer_id": i % 7,
        "terminal_id": i % 11,
        "tx_amount": 10.0 + i,
    }
    score = float(model.score(x)[0])
    return LogEntry(time.time(), None, "/predict", tx, x, score, model, 1.0, shadow=shadow)


def _wait(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "writer thread did not get there in time"
        time.sleep(0.005)


def test_full_queue_drops_new_entries_and_counts_them(
    tmp_path: Path, champion: ScoringModel
) -> None:
    """While the database is locked the writer stalls; submits never wait, overflow is dropped."""
    path = tmp_path / "log.sqlite"
    writer = PredictionLogWriter(path, FEATURE_COLUMNS, flush_seconds=0.01, max_queue=3)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        writer.submit(_entry(0, champion))
        _wait(lambda: writer.pending == 0)  # taken: the writer waits on the lock now
        started = time.perf_counter()
        for i in range(1, 6):
            writer.submit(_entry(i, champion))
        assert time.perf_counter() - started < 0.5  # the request path never blocks
        assert writer.pending == 3 and writer.dropped == 2 and writer.written == 0
    finally:
        blocker.rollback()
        blocker.close()
    assert writer.flush()
    writer.close()
    log = read_prediction_log(path, expand_features=False)
    assert log["transaction_id"].tolist() == [0, 1, 2, 3]  # the overflow (4, 5) is dropped
    assert log["request_id"].is_unique
    assert writer.stats() == {"written": 4, "dropped": 2, "shadow_errors": 0}
    writer.submit(_entry(6, champion))  # after close: dropped, not lost silently
    assert writer.stats()["dropped"] == 3
    with sqlite3.connect(path) as con:
        assert con.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone() == (4,)


def test_failing_shadow_is_counted_and_never_costs_a_champion_row(
    tmp_path: Path, champion: ScoringModel
) -> None:
    broken = _model("2", N_FEATURES - 1)  # cannot score rows of N_FEATURES columns
    good = _model("3", N_FEATURES)
    path = tmp_path / "log.sqlite"
    writer = PredictionLogWriter(path, FEATURE_COLUMNS, flush_seconds=0.01)
    shadows = [broken, good, broken, None, broken, good]
    entries = [_entry(i, champion, shadow) for i, shadow in enumerate(shadows)]
    for e in entries:
        writer.submit(e)
    assert writer.flush()
    writer.close()
    assert writer.stats() == {"written": 8, "dropped": 0, "shadow_errors": 3}
    log = read_prediction_log(path)
    main, shadow_rows = log[log["role"] == "champion"], log[log["role"] == "shadow"]
    assert main["transaction_id"].tolist() == list(range(len(shadows)))
    assert shadow_rows["transaction_id"].tolist() == [1, 5]
    assert (shadow_rows["model_version"] == "3").all()
    x = np.vstack([entries[1].features, entries[5].features])
    np.testing.assert_allclose(shadow_rows["score"].to_numpy(), good.score(x), rtol=0, atol=1e-12)
