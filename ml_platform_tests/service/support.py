"""A small real platform for the serving tests: simulated lake, trained models, registry.

Built once per test process (``build_platform`` is cached) in its own data directory, so
other stages' tests sharing the session data dir cannot move our champion. Everything is
real: simulator days, the batch feature engine, LightGBM trained through the training
code, MLflow registration and promotion through the registry API.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
SERVICE = "ml_platform.serving.service:FraudDetector"
#: BentoML 1.4's log line when a worker's service instance is up (worker id captured).
WORKER_READY = re.compile(
    r"\[entry_service:fraud_detector:(\d+)\] Service fraud_detector initialized"
)
#: The registered model the platform serves by default (fraud's; ML_PLATFORM_MODEL_NAME).
MODEL = "fraud_detector"
START = date(2025, 4, 1)
END = date(2025, 5, 15)
LABEL_DELAY = 7


@dataclass
class Platform:
    data_dir: Path
    transactions: pd.DataFrame  # validated transactions, all days
    features: pd.DataFrame  # batch features + key columns + tx_fraud, all days
    champion: object  # training.models.CandidateSet (LightGBM chosen)
    challenger: object  # CandidateSet with a smaller LightGBM
    windows: object  # training.datasets.Windows
    train: pd.DataFrame
    valid: pd.DataFrame


@contextlib.contextmanager
def platform_env(data_dir: Path, **extra: str) -> Iterator[None]:
    """Point the settings at ``data_dir`` (and extra ML_PLATFORM_* values) for a block."""
    from ml_platform.settings import get_settings

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("ML_PLATFORM_DATA_DIR", str(data_dir))
        for key, value in extra.items():
            mp.setenv(f"ML_PLATFORM_{key.upper()}", str(value))
        get_settings.cache_clear()
        yield
    finally:
        mp.undo()
        get_settings.cache_clear()


def days(start: date = START, end: date = END) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@functools.cache
def build_platform(root: Path) -> Platform:
    """Lake (validated_transactions, transaction_features) + two trained candidate sets."""
    from ml_platform.data import lake
    from ml_platform.data.simulator import generate_days
    from ml_platform.features import FEATURE_COLUMNS, build_features
    from ml_platform.settings import get_settings
    from ml_platform.training import datasets, metrics, models

    data_dir = root / "data"
    with platform_env(data_dir):
        s = get_settings()
        tx = generate_days(
            START,
            END,
            seed=s.sim_seed,
            n_customers=s.sim_n_customers,
            n_terminals=s.sim_n_terminals,
        )
        feats = build_features(tx, label_delay_days=LABEL_DELAY)
        keyed = tx[["transaction_id", "tx_datetime", "customer_id", "terminal_id"]].merge(
            feats, on="transaction_id"
        )
        day = tx["tx_datetime"].dt.date
        fday = keyed["tx_datetime"].dt.date
        for d in days():
            lake.write_partition(
                tx[day == d].reset_index(drop=True), s.lake_dir, "validated_transactions", d
            )
            lake.write_partition(
                keyed[fday == d].reset_index(drop=True), s.lake_dir, "transaction_features", d
            )
        labeled = datasets.join_labels(feats, tx)
        windows = datasets.platform_windows(
            END, train_days=21, valid_days=7, label_delay=LABEL_DELAY
        )
        train, valid = datasets.split(labeled, windows)
        cols = list(FEATURE_COLUMNS)
        baseline = models.fit_baseline(train, cols)
        base_m = metrics.validation_metrics(valid, baseline.score(valid))

        def candidate(rounds: int, leaves: int) -> models.CandidateSet:
            gbm = models.fit_lightgbm(
                train,
                cols,
                num_boost_round=rounds,
                threads=1,
                params={"num_leaves": leaves, "min_child_samples": 10},
            )
            m = metrics.validation_metrics(valid, gbm.score(valid))
            thr = models.best_f1_threshold(valid["tx_fraud"].to_numpy(), gbm.score(valid))
            return models.CandidateSet(baseline, gbm, base_m, m, gbm, "serving tests", thr, m)

        champion = candidate(120, 15)
        challenger = candidate(40, 7)
    return Platform(data_dir, tx, labeled, champion, challenger, windows, train, valid)


def register(p: Platform, cands: object, *, promote: bool) -> str:
    """Log + register through the training registry (challenger), optionally promote."""
    from ml_platform.features import FEATURE_VERSION
    from ml_platform.settings import get_settings
    from ml_platform.training import registry

    model_name = get_settings().model_name  # the model the service serves
    info = registry.log_training_run(
        cands,
        p.train,
        p.valid,
        p.windows,
        model_name=model_name,
        use_case="fraud",
        feature_version=FEATURE_VERSION,
    )
    if promote:
        registry.promote(info.version, model_name=model_name, who="tests", why="serving tests")
    return info.version


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(data_dir: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ML_PLATFORM_DATA_DIR": str(data_dir),
            "ML_PLATFORM_SERVING_PORT": str(port),
            "ML_PLATFORM_SERVING_RELOAD_SECONDS": "1",
            "ML_PLATFORM_SERVING_MAX_BATCH": "50",
            "ML_PLATFORM_SERVING_LOG_FLUSH_SECONDS": "0.05",
            "BENTOML_DO_NOT_TRACK": "true",
            "DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    return env


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a service log, for failure messages."""
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


class Api:
    """JSON client for a running service: one connection per request, never a retry.

    A connection error fails the test with the end of the service log: a service that
    died or hung up must show, not be papered over by a reconnect. ``slowest`` keeps each
    path's slowest round trip (seconds), an upper bound for the server-side latency.
    """

    def __init__(self, port: int, log_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.slowest: dict[str, float] = {}

    def call(
        self,
        method: str,
        path: str,
        body: object = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, object]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": content_type} if data is not None else {}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
        except (OSError, http.client.HTTPException) as exc:
            tail = log_tail(self.log_path) if self.log_path else "(no log)"
            pytest.fail(
                f"{method} {path}: connection to the service failed "
                f"({type(exc).__name__}: {exc}); service log:\n{tail}"
            )
        finally:
            conn.close()
        elapsed = time.perf_counter() - t0
        self.slowest[path] = max(self.slowest.get(path, 0.0), elapsed)
        try:
            return resp.status, json.loads(text)
        except json.JSONDecodeError:
            return resp.status, text


def _ready(port: int) -> bool:
    """``GET /readyz`` answers 200 (refused connections are expected while starting)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _workers_initialized(log_path: Path, ready: re.Pattern[str] = WORKER_READY) -> int:
    """How many API worker processes have finished ``__init__`` (from BentoML's log)."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return len(set(ready.findall(text)))


@contextlib.contextmanager
def bentoml_serve(
    env: dict[str, str],
    log_path: Path,
    ready_timeout: float = 120,
    *,
    service: str = SERVICE,
    working_dir: Path | None = None,
    worker_ready: re.Pattern[str] = WORKER_READY,
) -> Iterator[subprocess.Popen]:
    """The real ``bentoml serve`` of an API (default: fraud's), ready when yielded, stopped
    on exit. ``working_dir``: a team's folder holding the ``service`` module.

    Ready means ``/readyz`` answers and every worker (``ML_PLATFORM_SERVING_WORKERS``)
    has initialised: one ready worker already answers ``/readyz`` for all.
    Its own process group (workers included) gets SIGTERM, so BentoML's shutdown hooks
    run (the prediction log is flushed); SIGKILL only if it has not stopped in 15 s.
    """
    bentoml = Path(sys.executable).with_name("bentoml")
    port = int(env["ML_PLATFORM_SERVING_PORT"])
    workers = int(env.get("ML_PLATFORM_SERVING_WORKERS", "1"))
    with open(log_path, "w") as log:
        where = ["--working-dir", str(working_dir)] if working_dir else []
        proc = subprocess.Popen(
            [str(bentoml), "serve", service, *where],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + ready_timeout
        while not (_ready(port) and _workers_initialized(log_path, worker_ready) >= workers):
            if proc.poll() is not None:
                pytest.fail(f"bentoml serve exited {proc.returncode}:\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"service not ready in {ready_timeout} s:\n{log_tail(log_path)}")
            time.sleep(0.25)
        yield proc
    finally:
        stop_service(proc)


def stop_service(proc: subprocess.Popen) -> None:
    """SIGTERM the service's process group and wait; SIGKILL if it hangs (idempotent)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # already gone, workers included
        return
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@functools.cache
def registered_platform(root: Path) -> tuple[Platform, str, str]:
    """The platform with champion (v1) and challenger (v2) in its registry."""
    p = build_platform(root)
    with platform_env(p.data_dir):
        champion = register(p, p.champion, promote=True)
        challenger = register(p, p.challenger, promote=False)
    return p, champion, challenger


def scoring_model(p: Platform, cands: object, version: str = "0") -> object:
    """A ScoringModel straight from a trained candidate (what the registry would load)."""
    from ml_platform.features import FEATURE_VERSION
    from ml_platform.serving.scoring import ScoringModel, native_predict_fn

    native = cands.chosen.model
    return ScoringModel(
        name=MODEL,
        version=version,
        threshold=float(cands.threshold),
        predict_proba=native_predict_fn(native),
        native=native,
        feature_version=FEATURE_VERSION,
    )


def copy_version(src_name: str, src_version: str, dst_name: str) -> str:
    """Register an already-logged version under another model name, tags included.

    Cheaper than logging a new run (no artifact upload, no requirements check); used to
    give the service test its own registered model in the shared registry.
    """
    from ml_platform.training import registry

    client = registry._client()
    mv = client.copy_model_version(f"models:/{src_name}/{src_version}", dst_name)
    src = client.get_model_version(src_name, src_version)
    for key, value in src.tags.items():
        if not key.startswith("alias."):
            client.set_model_version_tag(dst_name, mv.version, key, value)
    return str(mv.version)


@contextlib.contextmanager
def running_service(env: dict[str, str], log_path: Path, timeout: float = 120) -> Iterator[int]:
    """The real ``bentoml serve`` of the API with ``env`` (see ``service_env``), yielded
    once ``/readyz`` answers 200 (its port); stopped with its process group on exit."""
    import http.client
    import signal
    import subprocess
    import sys
    import time

    port = int(env["ML_PLATFORM_SERVING_PORT"])
    bentoml = Path(sys.executable).with_name("bentoml")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(bentoml), "serve", "ml_platform.serving.service:FraudDetector"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"bentoml serve exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"service not ready in {timeout:.0f} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.25)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
