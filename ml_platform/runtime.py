"""Process set-up shared by the CLI, Dagster and the service: telemetry off, DAGSTER_HOME.

The machine has no network but the package registries, and the platform must never phone
home: every library's tracking is switched off before it is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

from ml_platform.settings import Settings, get_settings

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",  # dbt, MLflow (MLflow only accepts "true")
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
}

EMBEDDED_DAGSTER_YAML = """\
# Written by ml-platform for the embedded profile (SQLite under DAGSTER_HOME).
telemetry:
  enabled: false
run_queue:
  max_concurrent_runs: 2
concurrency:
  pools:
    default_limit: 1   # one writer for the DuckDB warehouse (pool "warehouse")
"""


def quiet_telemetry() -> None:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def ensure_dagster_home(settings: Settings | None = None) -> Path:
    """Create DAGSTER_HOME with the profile's dagster.yaml and export it for Dagster."""
    s = settings or get_settings()
    home = Path(os.environ.get("DAGSTER_HOME") or s.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return home
