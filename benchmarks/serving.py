"""Real-time API latency and throughput against the real `bentoml serve`; prints one JSON.

Set-up (not timed): full-scale simulated days in a temporary data dir, a LightGBM champion
AND a challenger (so shadow scoring is part of the measured load) trained with the
training code and registered in MLflow, the SQLite online store loaded as the
``online_feature_store`` asset would leave it the evening before the replayed day.

Measured: ``bentoml serve ml_platform.serving.service:FraudDetector`` in a subprocess
(start-up to /readyz), warm-up, then with keep-alive ``http.client`` connections:
2,000 sequential ``/predict`` requests (the replayed day's real transactions, in event
order) and 2,000 sequential ``/echo`` (the framework floor: same body, parse and return);
then 8 concurrent client processes for 20 s on each. p50/p95/p99 (ms), throughput, errors,
plus the handler's own latency from the prediction log and the log writer's counters.
Targets: p50 <= 2x echo p50, p99 <= 5 ms sequential, >= 400 req/s with 8 clients, 0 errors.

Usage: ``uv run python benchmarks/serving.py [--customers 5000] [--terminals 10000]
[--days 70] [--sequential 2000] [--clients 8] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT.parent
START = date(2025, 1, 1)


def _conn(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> int:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def _request_loop(
    port: int, path: str, bodies: list[bytes], offset: int, more: Callable[[int], bool]
) -> tuple[list[float], int]:
    """POST bodies over one keep-alive connection while ``more(requests_sent)``; a failed
    request counts as an error and reconnects."""
    conn = _conn(port)
    times, errors, sent = [], 0, 0
    while more(sent):
        t = time.perf_counter()
        try:
            ok = _post(conn, path, bodies[(offset + sent) % len(bodies)]) == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = _conn(port)
        times.append(time.perf_counter() - t)
        errors += not ok
        sent += 1
    conn.close()
    return times, errors


def sequential(port: int, path: str, bodies: list[bytes], n: int) -> tuple[list[float], int]:
    return _request_loop(port, path, bodies, 0, lambda sent: sent < n)


def _client(args: tuple) -> tuple[list[float], int]:
    port, path, bodies, offset, start_at, seconds = args
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + seconds
    return _request_loop(port, path, bodies, offset, lambda _: time.time() < deadline)


def concurrent(port: int, path: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Pool(clients) as pool:
        start_at = time.time() + 2.0  # every client connected and waiting
        step = max(1, len(bodies) // clients)
        jobs = [(port, path, bodies, k * step, start_at, seconds) for k in range(clients)]
        results = pool.map(_client, jobs)
    times = [t for r in results for t in r[0]]
    errors = sum(r[1] for r in results)
    return {
        **stats(times),
        "requests": len(times),
        "errors": errors,
        "req_per_s": round(len(times) / seconds, 1),
    }


def stats(times: list[float]) -> dict:
    import numpy as np

    a = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_online_store(day: date) -> dict:
    """State at the end of ``day - 1`` + the labels maturing during ``day``."""
    import pandas as pd

    from ml_platform.data import lake
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.base import open_store
    from ml_platform.settings import get_settings

    s = get_settings()
    days = lake.list_partitions(s.lake_dir, "validated_transactions")
    tx = lake.read_partitions(s.lake_dir, "validated_transactions", days)
    with open_store(s) as store:
        stats_ = store.load(tx[tx["tx_datetime"] < pd.Timestamp(day)], pd.Timestamp(day))
        matured = tx[tx["tx_datetime"].dt.date == day - timedelta(days=s.label_delay_days)]
        OnlineFeatureEngine(store, s.label_delay_days).record_labels(matured)
    return stats_


def request_bodies(day: date) -> list[bytes]:
    from ml_platform.data import lake
    from ml_platform.settings import get_settings

    tx = lake.read_partitions(get_settings().lake_dir, "validated_transactions", [day])
    tx = tx.sort_values(["tx_datetime", "transaction_id"])
    return [
        json.dumps(
            {
                "transaction_id": int(r.transaction_id),
                "tx_datetime": r.tx_datetime.isoformat(),
                "customer_id": int(r.customer_id),
                "terminal_id": int(r.terminal_id),
                "tx_amount": float(r.tx_amount),
            }
        ).encode()
        for r in tx.itertuples()
    ]


def start_service(data_dir: Path, port: int, log_path: Path) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ)
    env.update({"ML_PLATFORM_SERVING_PORT": str(port), "ML_PLATFORM_DATA_DIR": str(data_dir)})
    bentoml = Path(sys.executable).with_name("bentoml")
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(bentoml), "serve", "ml_platform.serving.service:FraudDetector"],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited: {log_path.read_text()[-2000:]}")
        try:
            conn = _conn(port)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.2)
    stop_service(proc)
    raise RuntimeError("service not ready in 180 s")


def stop_service(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


def get_json(port: int, path: str) -> dict:
    conn = _conn(port)
    conn.request("GET", path)
    return json.loads(conn.getresponse().read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--terminals", type=int, default=10000)
    ap.add_argument("--days", type=int, default=70, help="simulated history (store + training)")
    ap.add_argument("--sequential", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--train-days", type=int, default=7, help="training window of the models")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from batch_scoring import configure, prepare

    data_dir = Path(tempfile.mkdtemp(prefix="mlp-serving-bench-"))
    end = START + timedelta(days=args.days - 1)
    day = end  # replayed: its transactions are new to the store
    configure(data_dir, START, end, args.customers, args.terminals)
    proc = None
    try:
        setup = prepare(data_dir, START, end, train_days=args.train_days, challenger=True)
        setup["online_store"] = load_online_store(day)
        bodies = request_bodies(day)
        port = free_port()
        proc, startup_s = start_service(data_dir, port, data_dir / "bentoml.log")
        setup["service_start_to_ready_s"] = round(startup_s, 1)
        model = get_json(port, "/model")

        for path in ("/predict", "/echo"):
            sequential(port, path, bodies, args.warmup)
        bench_start = time.time()
        seq = {}
        for path in ("/predict", "/echo"):
            times, errors = sequential(port, path, bodies, args.sequential)
            seq[path] = {
                **stats(times),
                "requests": len(times),
                "errors": errors,
                "req_per_s": round(len(times) / sum(times), 1),
            }
        conc = {
            path: concurrent(port, path, bodies, args.clients, args.seconds)
            for path in ("/predict", "/echo")
        }
        time.sleep(1.0)  # let the log writer drain
        log_stats = get_json(port, "/log_stats")
        from datetime import UTC, datetime

        from ml_platform.serving.prediction_log import read_prediction_log

        log = read_prediction_log(
            since=datetime.fromtimestamp(bench_start, UTC), expand_features=False
        )
        champ = log[(log["role"] == "champion") & (log["endpoint"] == "/predict")]
        shadow = log[log["role"] == "shadow"]
        handler = {
            "p50_ms": round(float(champ["latency_ms"].quantile(0.5)), 3),
            "p99_ms": round(float(champ["latency_ms"].quantile(0.99)), 3),
        }
        echo_p50 = seq["/echo"]["p50_ms"]
        out = {
            "benchmark": "serving",
            "scale": {"customers": args.customers, "terminals": args.terminals},
            "setup": setup,
            "champion": (model.get("champion") or {}).get("version"),
            "challenger": (model.get("challenger") or {}).get("version"),
            "sequential": seq,
            f"concurrent_{args.clients}_clients_{int(args.seconds)}s": conc,
            "handler_latency_from_prediction_log": handler,
            "prediction_log": {
                **log_stats,
                "champion_rows": len(champ),
                "shadow_rows": len(shadow),
            },
            "targets": {
                "p50_vs_echo": "<= 2x",
                "p99_ms_sequential": 5,
                "concurrent_req_per_s": 400,
                "errors": 0,
            },
            "passed": {
                "p50_le_2x_echo": seq["/predict"]["p50_ms"] <= 2 * echo_p50,
                "p99_le_5ms": seq["/predict"]["p99_ms"] <= 5,
                "ge_400_req_per_s": conc["/predict"]["req_per_s"] >= 400,
                "zero_errors": seq["/predict"]["errors"] + conc["/predict"]["errors"] == 0,
            },
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(out))
    finally:
        if proc is not None:
            stop_service(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
