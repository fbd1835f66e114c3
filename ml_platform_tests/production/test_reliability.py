"""Reliability under faults and bad input, against the real service and real Redis.

One BentoML server (module scope) runs as in production: champion from the registry,
online features from a private ``redis-server`` (so stopping it never disturbs the
machine's shared Redis), bearer-token auth and a small body limit. The tests run in file
order; the Redis outage comes last because it empties the store.

The SIGKILL and warehouse-race tests need no server: see test_crash_and_race.py.
"""

from __future__ import annotations

import http.client
import json
import secrets
import signal
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest

from ml_platform_tests.production.api_server import ApiServer
from ml_platform_tests.production.conftest import OwnRedis

pytestmark = [pytest.mark.production, pytest.mark.slow]

AS_OF = pd.Timestamp(datetime(2025, 5, 8, 23, 59, 59))
MAX_BODY = 65_536
N_LOAD = 10_000
REDIS_TIMEOUT_S = 0.5  # short, so the hung-Redis test waits little


@pytest.fixture(scope="module")
def api(platform, tmp_path_factory):
    """Registry champion + Redis online store loaded as of AS_OF + the running service."""
    from ml_platform.features.stores.base import open_store
    from ml_platform.settings import Settings
    from ml_platform_tests.service.support import free_port, platform_env, register, service_env

    root = tmp_path_factory.mktemp("api")
    data_dir = root / "data"
    with platform_env(data_dir):
        register(platform, platform.champion, promote=True)
    redis_server = OwnRedis(root / "redis")
    redis_server.start()
    store_settings = Settings(
        data_dir=data_dir, profile="embedded", online_store="redis", redis_url=redis_server.url
    )
    history = platform.transactions[platform.transactions["tx_datetime"] <= AS_OF]
    with open_store(store_settings) as store:
        store.load(history, AS_OF)
    token = secrets.token_urlsafe(24)  # generated per run: no secret in the repo
    port = free_port()
    env = service_env(data_dir, port) | {
        "ML_PLATFORM_PROFILE": "embedded",
        "ML_PLATFORM_ONLINE_STORE": "redis",
        "ML_PLATFORM_REDIS_URL": redis_server.url,
        "ML_PLATFORM_REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT_S),
        "ML_PLATFORM_API_TOKEN": token,
        "ML_PLATFORM_API_MAX_BODY_BYTES": str(MAX_BODY),
        "ML_PLATFORM_SERVING_WORKERS": "1",
    }
    server = ApiServer(env, port, root / "bentoml.log")
    server.start()
    server.token = token
    server.redis = redis_server
    server.data_dir = data_dir
    server.headers = {"Authorization": f"Bearer {token}"}
    yield server
    server.stop()
    redis_server.stop()


def _stream(platform, n: int) -> list[dict]:
    tx = platform.transactions.sort_values(["tx_datetime", "transaction_id"])
    rows = tx[tx["tx_datetime"] > AS_OF].head(n).drop(columns="tx_fraud")
    rows = rows[["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount"]]
    out = rows.to_dict("records")
    for r in out:
        r["tx_datetime"] = r["tx_datetime"].isoformat()
    return out


def test_auth_and_request_size_limit(api):
    tx = _stream_one()
    assert httpx.post(f"{api.url}/predict", json=tx).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    r = httpx.post(f"{api.url}/predict", json=tx, headers=wrong)
    assert r.status_code == 401 and "bearer token" in r.json()["error"]
    assert httpx.get(f"{api.url}/readyz").status_code == 200  # probes need no token
    big = {"transactions": [tx] * 1000}  # ~130 kB > the 64 kB limit
    r = httpx.post(f"{api.url}/predict_batch", json=big, headers=api.headers)
    assert r.status_code == 413 and "ML_PLATFORM_API_MAX_BODY_BYTES" in r.json()["error"]

    def chunks():  # no Content-Length: the limit holds for streamed bodies too
        for _ in range(100):
            yield b" " * 1024

    r = httpx.post(f"{api.url}/predict", content=chunks(), headers=api.headers)
    assert r.status_code == 413


def _stream_one() -> dict:
    return {
        "transaction_id": 1,
        "tx_datetime": "2025-05-09T10:00:00",
        "customer_id": 1,
        "terminal_id": 1,
        "tx_amount": 10.0,
    }


def test_api_on_redis_matches_the_sqlite_engine(api, platform, tmp_path):
    """Served answers (Redis store) == SQLite store + the same champion, in process."""
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.sqlite import SQLiteStore

    stream = _stream(platform, 120)
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=10) as client:
        served = [client.post("/predict", json=tx) for tx in stream]
    assert all(r.status_code == 200 for r in served), served[0].text
    got = np.array([r.json()["fraud_probability"] for r in served])

    history = platform.transactions[platform.transactions["tx_datetime"] <= AS_OF]
    with SQLiteStore(tmp_path / "online.sqlite") as store:
        store.load(history, AS_OF)
        engine = OnlineFeatureEngine(store, 7)
        x = np.vstack([engine.compute_and_record(tx) for tx in stream])
    expected = platform.champion.chosen.score(x)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    assert {r.json()["model_version"] for r in served} == {served[0].json()["model_version"]}


def test_openapi_fuzzing_yields_no_server_error(api):
    """Schemathesis generates requests from the service's own OpenAPI schema: no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{api.url}/docs.json", headers=api.headers)
    schema.config.update(base_url=api.url)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert any(op.path == "/predict" for op in operations)
    failures: list[str] = []

    def fuzz_operation(op) -> None:
        @given(case=op.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case) -> None:
            response = case.call(base_url=api.url, headers=api.headers, timeout=10)
            if response.status_code >= 500:
                failures.append(
                    f"{op.method.upper()} {op.path} -> {response.status_code}: "
                    f"{response.text[:200]} for {case.body!r}"[:400]
                )

        fuzz()

    for op in operations:
        fuzz_operation(op)
    assert not failures, "\n".join(failures[:10])


def test_load_10k_requests_lose_no_prediction_log_row(api, platform):
    """10,000 requests on loopback (8 keep-alive clients): every answer is logged once."""
    rng = np.random.default_rng(7)
    customers = platform.transactions["customer_id"].unique()
    terminals = platform.transactions["terminal_id"].unique()
    base_id, start = 900_000_000, datetime(2025, 5, 10)
    bodies = [
        {
            "transaction_id": base_id + i,
            "tx_datetime": (start + timedelta(seconds=3 * i)).isoformat(),
            "customer_id": int(rng.choice(customers)),
            "terminal_id": int(rng.choice(terminals)),
            "tx_amount": round(float(rng.gamma(2.0, 30.0)), 2),
        }
        for i in range(N_LOAD)
    ]
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(part: list[dict]) -> None:
        # http.client: a lean keep-alive client, so the test measures the server, not httpx
        conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
        headers = {"Content-Type": "application/json", **api.headers}
        got = []
        try:
            for body in part:
                conn.request("POST", "/predict", body=json.dumps(body), headers=headers)
                response = conn.getresponse()
                response.read()
                got.append(response.status)
        finally:
            conn.close()
        with lock:
            statuses.extend(got)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, [bodies[i::8] for i in range(8)]))
    seconds = time.perf_counter() - t0
    assert statuses.count(200) == N_LOAD, {s: statuses.count(s) for s in set(statuses)}

    # The log writer batches rows; wait (bounded) until every answer is on disk.
    log_path = api.data_dir / "serving" / "prediction_log.sqlite"
    query = (
        "SELECT count(*), count(DISTINCT transaction_id) FROM prediction_log "
        "WHERE role = 'champion' AND transaction_id >= ? AND transaction_id < ?"
    )
    deadline = time.monotonic() + 30
    while True:
        con = sqlite3.connect(f"file:{log_path}?mode=ro", uri=True, timeout=10)
        try:
            rows, distinct = con.execute(query, (base_id, base_id + N_LOAD)).fetchone()
        finally:
            con.close()
        if rows >= N_LOAD or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (rows, distinct) == (N_LOAD, N_LOAD), f"logged {rows} rows for {N_LOAD} answers"
    stats = httpx.get(f"{api.url}/log_stats", headers=api.headers).json()
    assert stats["dropped"] == 0
    print(f"load: {N_LOAD} requests in {seconds:.1f}s = {N_LOAD / seconds:.0f} req/s")


def test_redis_outage_gives_503_then_recovers_by_itself(api, platform):
    tx = _stream(platform, 1)[0] | {"transaction_id": 999_999_999}
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=10) as client:
        assert client.post("/predict", json=tx).status_code == 200
        api.redis.stop()
        t0 = time.perf_counter()
        r = client.post("/predict", json=tx)
        waited = time.perf_counter() - t0
        assert r.status_code == 503, r.text
        assert "online feature store unavailable" in r.json()["error"]
        assert r.headers["retry-after"].isdigit()
        assert waited < 5, f"answered after {waited:.1f}s: must not hang"
        batch = client.post("/predict_batch", json={"transactions": [tx]})
        assert batch.status_code == 503
        assert client.get("/readyz").status_code == 200  # the process itself is fine

        api.redis.start()  # same port, empty store: the service reconnects on its own
        deadline = time.monotonic() + 20
        while (status := client.post("/predict", json=tx).status_code) != 200:
            assert status == 503, status
            assert time.monotonic() < deadline, "no recovery within 20 s of Redis coming back"
            time.sleep(0.2)


def test_hung_redis_gives_503_after_the_timeout_then_recovers(api, platform):
    """A Redis that accepts connections but never answers (the process is stopped, not
    dead: the kernel still queues the bytes) costs a request the configured timeout, not a
    hung worker."""
    tx = _stream(platform, 1)[0] | {"transaction_id": 999_999_998}
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=30) as client:
        assert client.post("/predict", json=tx).status_code == 200
        api.redis.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.perf_counter()
            r = client.post("/predict", json=tx)
            waited = time.perf_counter() - t0
        finally:
            api.redis.proc.send_signal(signal.SIGCONT)
        assert r.status_code == 503, r.text
        assert "Timeout" in r.json()["error"]
        assert REDIS_TIMEOUT_S <= waited < REDIS_TIMEOUT_S + 2, f"answered after {waited:.2f}s"
        deadline = time.monotonic() + 10
        while (status := client.post("/predict", json=tx).status_code) != 200:
            assert status == 503, status
            assert time.monotonic() < deadline, "no recovery within 10 s of Redis resuming"
            time.sleep(0.1)
