"""A small real platform for the serving tests: simulated lake, trained models, registry.

Built once per test process (``build_platform`` is cached) in its own data directory, so
other stages' tests sharing the session data dir cannot move our champion. Everything is
real: simulator days, the batch feature engine, LightGBM trained through the training
code, MLflow registration and promotion through the registry API.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

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

    mp = __import__("pytest").MonkeyPatch()
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
    from ml_platform.training import registry

    info = registry.log_training_run(
        cands, p.train, p.valid, p.windows, feature_version=FEATURE_VERSION
    )
    if promote:
        registry.promote(info.version, who="tests", why="serving tests")
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
        name="fraud_detector",
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
