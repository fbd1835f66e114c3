"""The environment dbt runs with: paths and the partition range as ``env_var()`` inputs.

dbt reads configuration through ``env_var()`` (profiles.yml, sources, macros) rather than
``--vars``: changing ``--vars`` per partition forces a full re-parse, env vars do not.
The values are derived from :class:`~ml_platform.settings.Settings`, the one source of config.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from ml_platform.settings import PROJECT_DIR, Settings

DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"
WAREHOUSE_PATH = "ML_PLATFORM_WAREHOUSE_PATH"
LAKE_DIR = "ML_PLATFORM_LAKE_DIR"
DBT_TARGET = "ML_PLATFORM_DBT_TARGET"
PARTITION_START = "ML_PLATFORM_DBT_PARTITION_START"
PARTITION_END = "ML_PLATFORM_DBT_PARTITION_END"
LABEL_DELAY_DAYS = "ML_PLATFORM_LABEL_DELAY_DAYS"  # a setting, passed on so dbt agrees with it

#: settings.profile -> dbt target in dbt_project/profiles.yml
DBT_TARGETS = {"embedded": "dev", "production": "prod"}


def dbt_env(
    settings: Settings, start: date | None = None, end: date | None = None
) -> dict[str, str]:
    """Variables for one dbt call; without a range dbt processes every day in the lake."""
    env = {
        WAREHOUSE_PATH: str(settings.warehouse_path),
        LAKE_DIR: str(settings.lake_dir),
        DBT_TARGET: DBT_TARGETS[settings.profile],
        LABEL_DELAY_DAYS: str(settings.label_delay_days),
    }
    if (start is None) != (end is None):
        raise ValueError("partition range: give both start and end, or neither")
    if start is not None and end is not None:
        if end < start:
            raise ValueError(f"partition range: end {end} is before start {start}")
        env[PARTITION_START] = start.isoformat()
        env[PARTITION_END] = end.isoformat()
    return env


@contextmanager
def dbt_environment(
    settings: Settings, start: date | None = None, end: date | None = None
) -> Iterator[dict[str, str]]:
    """Export :func:`dbt_env` for the dbt subprocess, restoring the previous values after."""
    env = dbt_env(settings, start, end)
    keys = (WAREHOUSE_PATH, LAKE_DIR, DBT_TARGET, LABEL_DELAY_DAYS, PARTITION_START, PARTITION_END)
    saved = {key: os.environ.get(key) for key in keys}
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # DuckDB does not create folders
    try:
        for key in keys:
            os.environ.pop(key, None)
        os.environ.update(env)
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
