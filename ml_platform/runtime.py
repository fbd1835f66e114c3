"""Process set-up shared by the CLI, Dagster and the service: telemetry off, DAGSTER_HOME.

The machine has no network but the package registries, and the platform must never phone
home: every library's tracking is switched off before it is imported.

``settings.profile`` picks the Dagster instance: ``embedded`` writes a SQLite-backed
dagster.yaml; ``production`` installs ``deploy/dagster.yaml`` (PostgreSQL storage, queued
runs, concurrency pools), exports the ``ML_PLATFORM_PG_*`` variables it reads from the
resolved settings and creates the Dagster and MLflow databases if they are missing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ml_platform.settings import PROJECT_DIR, Settings, get_settings

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",  # dbt, MLflow (MLflow only accepts "true")
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DAGSTER_DISABLE_TELEMETRY": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
}

#: First line of every dagster.yaml ml-platform writes; a file without it is the user's own
#: and is never overwritten.
MANAGED_MARKER = "# Written by ml-platform"

EMBEDDED_DAGSTER_YAML = f"""\
{MANAGED_MARKER} for the embedded profile (SQLite under DAGSTER_HOME).
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 2
  pools:
    default_limit: 1   # one writer for the DuckDB warehouse (pool "warehouse")
"""

#: The production instance config; also what compose mounts and the image copies.
PRODUCTION_DAGSTER_YAML = PROJECT_DIR / "deploy" / "dagster.yaml"


def quiet_telemetry() -> None:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


def dagster_yaml_text(settings: Settings) -> str:
    """The dagster.yaml the profile needs, marked as written by ml-platform."""
    if settings.profile == "production":
        if not PRODUCTION_DAGSTER_YAML.exists():
            raise FileNotFoundError(f"profile=production: {PRODUCTION_DAGSTER_YAML} is missing")
        body = PRODUCTION_DAGSTER_YAML.read_text()
        return f"{MANAGED_MARKER} for the production profile from deploy/dagster.yaml.\n{body}"
    return EMBEDDED_DAGSTER_YAML


def dagster_env(settings: Settings) -> dict[str, str]:
    """The environment deploy/dagster.yaml reads (``env:`` blocks), from the settings."""
    return {
        "ML_PLATFORM_PG_HOST": settings.pg_host,
        "ML_PLATFORM_PG_PORT": str(settings.pg_port),
        "ML_PLATFORM_PG_USER": settings.pg_user,
        "ML_PLATFORM_PG_PASSWORD": settings.pg_password.get_secret_value(),
        "ML_PLATFORM_PG_DAGSTER_DB": settings.pg_dagster_db,
    }


def ensure_dagster_home(settings: Settings | None = None) -> Path:
    """Create DAGSTER_HOME with the profile's dagster.yaml and export it for Dagster.

    A dagster.yaml written by ml-platform is replaced when the profile changes; one
    without the marker line belongs to the user and is left alone.
    """
    s = settings or get_settings()
    home = Path(os.environ.get("DAGSTER_HOME") or s.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = dagster_yaml_text(s)
    current = config.read_text() if config.exists() else None
    if current is None or (current.startswith(MANAGED_MARKER) and current != wanted):
        _atomic_write_text(config, wanted)
    if s.profile == "production":
        os.environ.update(dagster_env(s))
        ensure_production_databases(s)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def ensure_production_databases(settings: Settings) -> list[str]:
    """Create the Dagster and MLflow databases on the PostgreSQL server if missing.

    Returns the names created. Tables are created by Dagster and MLflow themselves.
    """
    names = [settings.pg_dagster_db]
    if settings.tracking_uri == settings.postgres_url(settings.pg_mlflow_db):
        names.append(settings.pg_mlflow_db)
    return [name for name in names if create_database_if_missing(settings, name)]


def create_database_if_missing(settings: Settings, name: str) -> bool:
    """``CREATE DATABASE name`` unless it exists; True if it was created."""
    import psycopg2
    import psycopg2.errors
    from psycopg2 import sql

    try:
        con = psycopg2.connect(
            host=settings.pg_host,
            port=settings.pg_port,
            user=settings.pg_user,
            password=settings.pg_password.get_secret_value(),
            dbname="postgres",
            connect_timeout=5,
        )
    except psycopg2.OperationalError as exc:
        raise ConnectionError(
            f"pg_host: cannot reach PostgreSQL at {settings.pg_host}:{settings.pg_port} "
            f"as {settings.pg_user!r}: {str(exc).strip()}"
        ) from exc
    try:
        con.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg2.errors.DuplicateDatabase:  # created concurrently: fine
                return False
            return True
    finally:
        con.close()


def _atomic_write_text(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, target)
