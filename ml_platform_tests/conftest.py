"""Test-session configuration: a small, isolated platform in a temporary directory.

The environment is set before any test imports ``ml_platform.definitions`` so that the
Dagster partitions, the lake and DAGSTER_HOME all point at the session's temp folder.
Tests that need other settings use the ``settings_env`` fixture.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlp-tests-"))

TEST_ENV = {
    "ML_PLATFORM_DATA_DIR": str(_SESSION_DIR / "data"),
    "ML_PLATFORM_DAGSTER_HOME": str(_SESSION_DIR / "dagster_home"),
    "DAGSTER_HOME": str(_SESSION_DIR / "dagster_home"),
    "ML_PLATFORM_SIM_N_CUSTOMERS": "200",
    "ML_PLATFORM_SIM_N_TERMINALS": "400",
    "ML_PLATFORM_START_DATE": "2025-04-01",
    "ML_PLATFORM_END_DATE": "2025-05-15",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "HYPOTHESIS_STORAGE_DIRECTORY": str(_SESSION_DIR / "hypothesis"),
}
os.environ.update(TEST_ENV)
(_SESSION_DIR / "dagster_home").mkdir(parents=True, exist_ok=True)
(_SESSION_DIR / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator:
    """Apply ``ML_PLATFORM_*`` overrides for one test; data goes to ``tmp_path``."""
    from ml_platform.settings import get_settings

    def apply(**overrides: object):
        monkeypatch.setenv("ML_PLATFORM_DATA_DIR", str(tmp_path / "data"))
        for key, value in overrides.items():
            monkeypatch.setenv(f"ML_PLATFORM_{key.upper()}", str(value))
        get_settings.cache_clear()
        return get_settings()

    yield apply
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def dask_client() -> Iterator:
    """One process-based LocalCluster (2 single-threaded workers, as ``compute.dask_client``
    starts) shared by every Dask test of the session, started on first use."""
    from distributed import Client, LocalCluster

    from ml_platform.compute import LOCAL_CLUSTER_WORKERS

    with (
        LocalCluster(
            n_workers=LOCAL_CLUSTER_WORKERS,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
