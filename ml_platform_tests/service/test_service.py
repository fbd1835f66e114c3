"""The real API: `bentoml serve ml_platform.serving.service:FraudDetector` in a subprocess.

Started once for the module (about 11 s) on a free port, with its own registered model
name in the test registry so it starts with no champion (503), then picks one up without
a restart. Predictions are compared with offline scoring of the same transactions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform_tests.service import support

pytestmark = pytest.mark.slow

SVC_MODEL = "fraud_detector_svc"
DAY = support.END


Api = support.Api


@pytest.fixture(scope="module")
def registered(session_dir: Path):
    return support.registered_platform(session_dir / "serving_platform")


@pytest.fixture(scope="module")
def api(registered, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    p, _, _ = registered
    port = support.free_port()
    env = support.service_env(p.data_dir, port)
    env["ML_PLATFORM_MODEL_NAME"] = SVC_MODEL
    log_path = tmp_path_factory.mktemp("svc") / "bentoml.log"
    with support.bentoml_serve(env, log_path):
        yield Api(port, log_path)


def _tx_json(row: pd.Series) -> dict:
    return {
        "transaction_id": int(row["transaction_id"]),
        "tx_datetime": row["tx_datetime"].isoformat(),
        "customer_id": int(row["customer_id"]),
        "terminal_id": int(row["terminal_id"]),
        "tx_amount": float(row["tx_amount"]),
    }


GOOD = {
    "transaction_id": 1,
    "tx_datetime": "2025-05-15T10:00:00",
    "customer_id": 1,
    "terminal_id": 2,
    "tx_amount": 10.0,
}


def test_no_champion_answers_503_and_service_stays_up(api: Api) -> None:
    status, body = api.call("POST", "/predict", GOOD)
    assert status == 503
    assert "no champion" in body["error"] and SVC_MODEL in body["error"]
    status, body = api.call("POST", "/predict_batch", {"transactions": [GOOD]})
    assert status == 503
    status, body = api.call("GET", "/model")
    assert status == 200 and body["champion"] is None
    assert api.call("GET", "/readyz")[0] == 200


@pytest.mark.parametrize(
    ("kind", "path", "body", "loc"),
    [
        (
            "missing field",
            "/predict",
            {k: v for k, v in GOOD.items() if k != "customer_id"},
            ["customer_id"],
        ),
        ("mistyped id", "/predict", {**GOOD, "terminal_id": "2"}, ["terminal_id"]),
        ("negative amount", "/predict", {**GOOD, "tx_amount": -5}, ["tx_amount"]),
        (
            "non-finite amount",
            "/predict",
            b'{"transaction_id": 1, "tx_datetime": '
            b'"2025-05-15T10:00:00", "customer_id": 1, "terminal_id": 2, "tx_amount": 1e999}',
            ["tx_amount"],
        ),
        (
            "unparseable datetime",
            "/predict",
            {**GOOD, "tx_datetime": "15/05/2025 10h"},
            ["tx_datetime"],
        ),
        (
            "date out of range",
            "/predict",
            {**GOOD, "tx_datetime": "1500-01-01T00:00:00"},
            ["tx_datetime"],
        ),
        ("body not JSON", "/predict", b"this is not json", []),
        ("oversized batch", "/predict_batch", {"transactions": [GOOD] * 51}, ["transactions"]),
        ("empty batch", "/predict_batch", {"transactions": []}, ["transactions"]),
        (
            "bad batch item",
            "/predict_batch",
            {"transactions": [GOOD, {**GOOD, "tx_amount": "x"}]},
            ["transactions", 1, "tx_amount"],
        ),
    ],
)
def test_bad_input_is_400_with_detail_loc_naming_the_field(
    api: Api, kind: str, path: str, body: object, loc: list
) -> None:
    """400 (never another 4xx or a 500) and one ``detail`` entry whose ``loc`` is the field."""
    raw = body if isinstance(body, bytes) else None
    status, answer = api.call("POST", path, None if raw else body, raw=raw)
    assert status == 400, (kind, status, answer)
    assert isinstance(answer, dict) and isinstance(answer.get("detail"), list), (kind, answer)
    named = [d for d in answer["detail"] if d["loc"] == loc]
    assert len(named) == 1 and named[0]["msg"], (kind, answer)
    if not loc:  # no field to name: the reason says the body is not JSON
        assert named[0]["type"] == "json_invalid" and "JSON" in named[0]["msg"], answer


@pytest.fixture(scope="module")
def served(api: Api, registered) -> tuple[str, str]:
    """Champion and challenger registered AFTER start-up; the poller must find them."""
    from ml_platform.training import registry

    p, v1, v2 = registered
    with support.platform_env(p.data_dir, model_name=SVC_MODEL):
        champion = support.copy_version("fraud_detector", v1, SVC_MODEL)
        registry.promote(champion, who="tests", why="service test", model_name=SVC_MODEL)
        challenger = support.copy_version("fraud_detector", v2, SVC_MODEL)
        registry.set_alias(
            "challenger", challenger, who="tests", why="shadow test", model_name=SVC_MODEL
        )
    deadline = time.monotonic() + 30
    while True:  # no /reload: the alias poller (1 s in tests) picks them up
        status, info = api.call("GET", "/model")
        chall = info.get("challenger") or {}
        if (info.get("champion") or {}).get("version") == champion and chall.get(
            "version"
        ) == challenger:
            break
        assert time.monotonic() < deadline, f"new champion not picked up: {info}"
        time.sleep(0.2)
    return champion, challenger


def test_new_champion_served_without_restart(api: Api, served: tuple[str, str]) -> None:
    champion, challenger = served
    status, body = api.call("POST", "/reload")
    assert status == 200 and body["serving"] == {"champion": champion, "challenger": challenger}
    status, body = api.call("POST", "/predict", GOOD)
    assert status == 200 and body["model_version"] == champion
    assert body["model_name"] == SVC_MODEL


def _load_online_store(p: support.Platform, day: date) -> None:
    """Online state as the online_feature_store asset leaves it at the end of ``day - 1``,
    plus the labels that mature during ``day`` (those of ``day - delay``)."""
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.base import open_store
    from ml_platform.settings import get_settings

    tx = p.transactions
    with support.platform_env(p.data_dir):
        s = get_settings()
        with open_store(s) as store:
            history = tx[tx["tx_datetime"] < pd.Timestamp(day)]
            store.load(history, pd.Timestamp(day) - pd.Timedelta(1, "ns"))
            matured = tx[tx["tx_datetime"].dt.date == day - timedelta(days=s.label_delay_days)]
            OnlineFeatureEngine(store, s.label_delay_days).record_labels(matured)


@pytest.fixture(scope="module")
def day_run(api: Api, served, registered) -> tuple[pd.DataFrame, list[dict], float]:
    """Every transaction of DAY sent one by one, in event order."""
    p, _, _ = registered
    _load_online_store(p, DAY)
    tx = p.transactions[p.transactions["tx_datetime"].dt.date == DAY]
    tx = tx.sort_values(["tx_datetime", "transaction_id"]).reset_index(drop=True)
    started = time.time()
    answers = []
    for _, row in tx.iterrows():
        status, body = api.call("POST", "/predict", _tx_json(row))
        assert status == 200, body
        answers.append(body)
    return tx, answers, started


def test_predictions_equal_offline_scoring(day_run, served, registered) -> None:
    """Same features (online engine vs batch engine) and same scores as offline."""
    from ml_platform.features import FEATURE_COLUMNS

    p, _, _ = registered
    champion, _ = served
    tx, answers, started = day_run
    offline = p.features.set_index("transaction_id").loc[tx["transaction_id"]]
    model = support.scoring_model(p, p.champion)
    expected = model.score(offline[FEATURE_COLUMNS].to_numpy())
    got = np.array([a["fraud_probability"] for a in answers])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert [a["transaction_id"] for a in answers] == tx["transaction_id"].tolist()
    assert all(a["model_version"] == champion for a in answers)
    assert [a["is_fraud"] for a in answers] == list(expected >= model.threshold)

    log = _wait_for_log(prediction_log_path_for(p), started, len(tx), "champion")
    log = log.set_index("transaction_id").loc[tx["transaction_id"]]
    np.testing.assert_allclose(
        log[FEATURE_COLUMNS].to_numpy(), offline[FEATURE_COLUMNS].to_numpy(), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(log["score"].to_numpy(), expected, rtol=0, atol=1e-12)
    assert (log["latency_ms"] > 0).all() and (log["model_version"] == champion).all()


def prediction_log_path_for(p: support.Platform) -> Path:
    from ml_platform.serving.prediction_log import prediction_log_path

    with support.platform_env(p.data_dir):
        return prediction_log_path()


def _wait_for_log(path: Path, since: float, n: int, role: str) -> pd.DataFrame:
    from datetime import UTC, datetime

    from ml_platform.serving.prediction_log import read_prediction_log

    deadline = time.monotonic() + 15
    while True:
        log = read_prediction_log(path, since=datetime.fromtimestamp(since, UTC), role=role)
        log = log[log["endpoint"] == "/predict"]
        if len(log) >= n or time.monotonic() > deadline:
            return log
        time.sleep(0.1)


def test_shadow_challenger_is_logged_never_returned(day_run, served, registered) -> None:
    from ml_platform.features import FEATURE_COLUMNS

    p, _, _ = registered
    champion, challenger = served
    tx, answers, started = day_run
    assert {a["model_version"] for a in answers} == {champion}
    shadow = _wait_for_log(prediction_log_path_for(p), started, len(tx), "shadow")
    assert len(shadow) == len(tx)
    assert (shadow["model_version"] == challenger).all()
    expected = support.scoring_model(p, p.challenger).score(shadow[FEATURE_COLUMNS].to_numpy())
    np.testing.assert_allclose(shadow["score"].to_numpy(), expected, rtol=0, atol=1e-12)


def test_predict_batch_equals_predict(api: Api, day_run) -> None:
    """A replayed batch (shuffled) gets the answers the one-by-one requests got."""
    tx, answers, _ = day_run
    rows = [_tx_json(r) for _, r in tx.head(30).iterrows()]
    order = np.random.default_rng(0).permutation(len(rows))
    status, body = api.call("POST", "/predict_batch", {"transactions": [rows[i] for i in order]})
    assert status == 200, body
    by_id = {a["transaction_id"]: a["fraud_probability"] for a in answers}
    assert [b["transaction_id"] for b in body] == [rows[i]["transaction_id"] for i in order]
    np.testing.assert_allclose(
        [b["fraud_probability"] for b in body],
        [by_id[b["transaction_id"]] for b in body],
        rtol=0,
        atol=1e-12,
    )


def test_echo_metrics_and_docs(api: Api) -> None:
    status, body = api.call("POST", "/echo", GOOD)
    assert status == 200 and body["transaction_id"] == 1
    status, text = api.call("GET", "/metrics")
    assert status == 200 and "bentoml_service_request" in text
    assert api.call("GET", "/docs.json")[0] == 200
    status, page = api.call("GET", "/")
    assert status == 200 and "html" in str(page).lower()


def _register_from_dir(model_dir: Path, like: str, **tags: str) -> str:
    """A new SVC_MODEL version whose artifacts are ``model_dir``, tagged like version ``like``.

    ``tags`` override the copied ones (e.g. another feature list).
    """
    from ml_platform.training import registry

    client = registry._client()
    src = client.get_model_version(SVC_MODEL, like)
    mv = client.create_model_version(
        SVC_MODEL, source=model_dir.as_uri(), run_id=src.run_id, tags={**src.tags, **tags}
    )
    return str(mv.version)


def _save_booster(booster: object, model_dir: Path) -> Path:
    import mlflow.lightgbm

    mlflow.lightgbm.save_model(booster, str(model_dir), pip_requirements=["lightgbm"])
    return model_dir


def _artifacts_deleted(p: support.Platform, tmp: Path, champion: str) -> tuple[str, str]:
    """The champion's booster saved, registered, then its files removed from the store."""
    import shutil

    model_dir = _save_booster(p.champion.chosen.model, tmp / "deleted_model")
    version = _register_from_dir(model_dir, champion)
    shutil.rmtree(model_dir)
    return version, "No such artifact"


def _other_features(p: support.Platform, tmp: Path, champion: str) -> tuple[str, str]:
    """A loadable booster whose registered feature list is not the one the code computes."""
    from ml_platform.features import FEATURE_COLUMNS

    model_dir = _save_booster(p.champion.chosen.model, tmp / "other_features")
    cols = json.dumps(list(FEATURE_COLUMNS[:-1]))
    return _register_from_dir(model_dir, champion, feature_columns=cols), "feature_columns"


@pytest.mark.parametrize("make_unloadable", [_artifacts_deleted, _other_features])
def test_champion_that_cannot_load_keeps_the_previous_one(
    api: Api, served, day_run, registered, tmp_path: Path, make_unloadable
) -> None:
    """@champion moved to a broken version: the previous one keeps answering, /model says why."""
    from ml_platform.training import registry

    p, _, _ = registered
    champion, _ = served
    with support.platform_env(p.data_dir, model_name=SVC_MODEL):
        broken, reason = make_unloadable(p, tmp_path, champion)
        registry.set_alias(
            "champion", broken, who="tests", why="unloadable champion", model_name=SVC_MODEL
        )
    try:
        status, body = api.call("POST", "/reload")
        assert status == 200 and body["serving"]["champion"] == champion, body
        status, answer = api.call("POST", "/predict", {**GOOD, "transaction_id": 7})
        assert status == 200 and answer["model_version"] == champion, answer
        status, info = api.call("GET", "/model")
        assert status == 200 and info["champion"]["version"] == champion
        error = info["last_error"] or ""
        assert f"champion: ModelLoadError: version {broken} cannot be loaded" in error, info
        assert reason in error and f"still serving version {champion}" in error, info
    finally:
        with support.platform_env(p.data_dir, model_name=SVC_MODEL):
            registry.set_alias(
                "champion", champion, who="tests", why="restore", model_name=SVC_MODEL
            )
    status, body = api.call("POST", "/reload")
    assert status == 200 and body["error"] is None and body["serving"]["champion"] == champion


def _bucket_bound(text: str, seconds: float) -> float:
    """The smallest histogram bucket bound (s) holding an observation of ``seconds``."""
    from ml_platform.monitoring.system import REQUEST_DURATION, parse_prometheus

    bounds = {float(lab["le"]) for lab, _ in parse_prometheus(text)[f"{REQUEST_DURATION}_bucket"]}
    return min(b for b in bounds if b >= seconds)


def test_metrics_scrape_finds_the_requests_just_made(api: Api, day_run, registered) -> None:
    """The monitoring scrape of the live /metrics counts these requests by HTTP code."""
    from ml_platform.monitoring.summary import scrape_metrics
    from ml_platform.settings import get_settings

    p, _, _ = registered
    with support.platform_env(p.data_dir, serving_port=api.port):
        settings = get_settings()
    before = scrape_metrics(settings)
    assert before is not None and before["url"] == f"http://127.0.0.1:{api.port}/metrics"
    was = before["endpoints"]["/predict"]
    for i in range(5):
        assert api.call("POST", "/predict", {**GOOD, "transaction_id": 100 + i})[0] == 200
    for _ in range(3):
        assert api.call("POST", "/predict", {**GOOD, "tx_amount": -1})[0] == 400
    deadline = time.monotonic() + 10
    while True:  # the server records a request just after answering it
        now = scrape_metrics(settings)["endpoints"]["/predict"]
        if now["count"] >= was["count"] + 8 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert now["count"] == was["count"] + 8, (was, now)
    assert now["by_status"]["200"] == was["by_status"].get("200", 0) + 5, (was, now)
    assert now["by_status"]["400"] == was["by_status"].get("400", 0) + 3, (was, now)
    assert now["by_status"]["503"] == was["by_status"]["503"] > 0  # before the champion
    # server-side latency <= the client's round trip: no quantile beyond its bucket
    _, text = api.call("GET", "/metrics")
    ceiling_ms = _bucket_bound(text, api.slowest["/predict"]) * 1000
    assert 0 < now["p50_ms"] <= now["p95_ms"] <= now["p99_ms"] <= ceiling_ms, now
    assert 0 < now["mean_ms"] <= api.slowest["/predict"] * 1000, now


def test_log_stats_match_the_prediction_log(api: Api, day_run, registered) -> None:
    """/log_stats counts every row the writer committed; nothing dropped, no shadow error."""
    from ml_platform.serving.prediction_log import read_prediction_log

    p, _, _ = registered
    path = prediction_log_path_for(p)
    deadline = time.monotonic() + 10
    while True:  # committed rows and the counter are read at two instants
        status, stats = api.call("GET", "/log_stats")
        rows = len(read_prediction_log(path, expand_features=False))
        if stats["written"] == rows or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200 and stats == {"written": rows, "dropped": 0, "shadow_errors": 0}
    assert rows >= 2 * len(day_run[0])  # the day's champion and shadow rows at least


def test_failing_shadow_is_counted_and_the_champion_still_answers(
    api: Api, served, day_run, registered, tmp_path: Path
) -> None:
    """A challenger that loads but cannot score: every request still answered, errors counted."""
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.training import models, registry

    p, _, _ = registered
    champion, challenger = served
    # registered with the code's feature list, trained on one feature fewer
    gbm = models.fit_lightgbm(p.train, list(FEATURE_COLUMNS[:-1]), num_boost_round=5, threads=1)
    with support.platform_env(p.data_dir, model_name=SVC_MODEL):
        broken = _register_from_dir(_save_booster(gbm.model, tmp_path / "m"), challenger)
        registry.set_alias(
            "challenger", broken, who="tests", why="failing shadow", model_name=SVC_MODEL
        )
    try:
        status, body = api.call("POST", "/reload")
        assert body["serving"] == {"champion": champion, "challenger": broken}, body
        before = api.call("GET", "/log_stats")[1]
        for i in range(3):
            status, answer = api.call("POST", "/predict", {**GOOD, "transaction_id": 200 + i})
            assert status == 200 and answer["model_version"] == champion, answer
        deadline = time.monotonic() + 10
        while True:
            stats = api.call("GET", "/log_stats")[1]
            if stats["written"] >= before["written"] + 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert stats == {
            "written": before["written"] + 3,  # the champion rows, no shadow row
            "dropped": before["dropped"],
            "shadow_errors": before["shadow_errors"] + 3,
        }, (before, stats)
    finally:
        with support.platform_env(p.data_dir, model_name=SVC_MODEL):
            registry.set_alias(
                "challenger", challenger, who="tests", why="restore", model_name=SVC_MODEL
            )
    assert api.call("POST", "/reload")[1]["serving"]["challenger"] == challenger
