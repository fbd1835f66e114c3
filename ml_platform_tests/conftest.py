"""Test-session configuration: a small, isolated platform in a temporary directory.

The environment is set before any test imports ``ml_platform.definitions`` so that the
Dagster partitions, the lake and DAGSTER_HOME all point at the session's temp folder.
Tests that need other settings use the ``settings_env`` fixture.

Under pytest-xdist (``-n 2 --dist loadfile`` in pyproject.toml) each worker is its own
process with its own session folder, so a file's module fixtures run once, on one worker.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_platform_tests import summary

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
    # Every `bentoml serve` empties and fills $BENTOML_HOME/prometheus_multiproc_dir: the
    # default ~/bentoml would mix the metrics of the services other processes run.
    "BENTOML_HOME": str(_SESSION_DIR / "bentoml"),
}
os.environ.update(TEST_ENV)
(_SESSION_DIR / "dagster_home").mkdir(parents=True, exist_ok=True)
(_SESSION_DIR / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


#: Markers of the files that start servers, a browser or whole pipelines, longest first.
_HEAVY_MARKERS = ("ui", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, the files holding heavy tests first (in file order otherwise).

    Workers take whole files in collection order (``--no-loadscope-reorder``): the long
    files then start at once, and the many short ones fill both workers' ends instead
    of one long file starting last and running alone. Every worker sorts the same way.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank: dict[str, int] = {}
    for item in items:
        heavy = [i for i, m in enumerate(_HEAVY_MARKERS) if item.get_closest_marker(m)]
        path = item.nodeid.split("::", 1)[0]
        rank[path] = min(rank.get(path, len(_HEAVY_MARKERS)), *heavy, len(_HEAVY_MARKERS))
    items.sort(key=lambda item: rank[item.nodeid.split("::", 1)[0]])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker, hand this process's summary lines to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[summary.WORKER_OUTPUT_KEY] = summary.LINES  # sent after every finish hook


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    summary.LINES.extend(getattr(node, "workeroutput", {}).get(summary.WORKER_OUTPUT_KEY, []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in summary.LINES:
        terminalreporter.write_line(line)


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
