"""Two API workers (``ML_PLATFORM_SERVING_WORKERS=2``) append to one prediction log.

The real ``bentoml serve`` with two worker processes on its own data directory (its own
log and online store; the test registry for the model): requests from several threads,
then the service is stopped and the log must hold every answer exactly once.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ml_platform_tests.service import support

pytestmark = pytest.mark.slow

WORKERS_MODEL = "fraud_detector_workers"
N_REQUESTS = 120
N_CLIENTS = 4
LAST_REQUEST = "bentoml_service_last_request_timestamp_seconds"


def _tx_json(row) -> dict:
    return {
        "transaction_id": int(row.transaction_id),
        "tx_datetime": row.tx_datetime.isoformat(),
        "customer_id": int(row.customer_id),
        "terminal_id": int(row.terminal_id),
        "tx_amount": float(row.tx_amount),
    }


def test_two_workers_log_every_answer_exactly_once(session_dir: Path, tmp_path: Path) -> None:
    from ml_platform.monitoring.system import parse_prometheus
    from ml_platform.serving.prediction_log import read_prediction_log
    from ml_platform.settings import get_settings
    from ml_platform.training import registry

    p, v1, _ = support.registered_platform(session_dir / "serving_platform")
    with support.platform_env(p.data_dir, model_name=WORKERS_MODEL):
        champion = support.copy_version("fraud_detector", v1, WORKERS_MODEL)
        registry.promote(champion, who="tests", why="two workers", model_name=WORKERS_MODEL)
        tracking_uri = get_settings().tracking_uri
    day = p.transactions[p.transactions["tx_datetime"].dt.date == support.END]
    bodies = [_tx_json(r) for r in day.head(N_REQUESTS).itertuples()]
    assert len(bodies) == N_REQUESTS

    data_dir = tmp_path / "data"
    port = support.free_port()
    env = support.service_env(data_dir, port)
    env.update(
        ML_PLATFORM_MODEL_NAME=WORKERS_MODEL,
        ML_PLATFORM_SERVING_WORKERS="2",
        ML_PLATFORM_MLFLOW_TRACKING_URI=tracking_uri,
        ML_PLATFORM_SERVING_RELOAD_SECONDS="0",
        # the writers would wait 30 s: the rows come from each worker's shutdown flush
        ML_PLATFORM_SERVING_LOG_FLUSH_SECONDS="30",
    )
    log_path = tmp_path / "bentoml.log"
    with support.bentoml_serve(env, log_path) as proc:

        def send(chunk: list[dict]) -> list[tuple[int, object]]:
            api = support.Api(port, log_path)
            return [api.call("POST", "/predict", body) for body in chunk]

        chunks = [bodies[i::N_CLIENTS] for i in range(N_CLIENTS)]
        with ThreadPoolExecutor(N_CLIENTS) as pool:
            answers = [a for part in pool.map(send, chunks) for a in part]
        assert all(status == 200 for status, _ in answers), answers
        assert {a["model_version"] for _, a in answers} == {champion}
        _, metrics = support.Api(port, log_path).call("GET", "/metrics")
        pids = {labels["pid"] for labels, _ in parse_prometheus(metrics)[LAST_REQUEST]}
        assert len(pids) == 2, f"both workers should have answered: {pids}"
        support.stop_service(proc)  # shutdown flushes each worker's pending log entries
        assert proc.returncode is not None

    with support.platform_env(data_dir):
        from ml_platform.serving.prediction_log import prediction_log_path

        log = read_prediction_log(prediction_log_path(), expand_features=False)
    champion_rows = log[log["role"] == "champion"]
    assert len(champion_rows) == N_REQUESTS, (
        f"{len(champion_rows)} of {N_REQUESTS} answers logged; service log:\n"
        + support.log_tail(log_path)
    )
    assert champion_rows["request_id"].is_unique
    counts = Counter(champion_rows["transaction_id"].tolist())
    assert counts == Counter(b["transaction_id"] for b in bodies)  # every transaction once
    assert (champion_rows["model_version"] == champion).all()
