"""Run asset jobs in-process against the DAGSTER_HOME instance (CLI, demo, backtests).

Runs are recorded in the instance, so everything the CLI does shows in the Dagster UI.
A partition range runs as one single-run backfill (one run, every partition).
"""

from __future__ import annotations

import contextlib
from datetime import date
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)


def run_job(
    defs: dg.Definitions,
    job_name: str,
    *,
    start: date | None = None,
    end: date | None = None,
    instance: dg.DagsterInstance | None = None,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
    log_level: str | None = None,
    log_dir: Path | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute ``job_name`` once, over the partition range ``start..end`` if given.

    ``log_level`` (e.g. "WARNING") quiets the console: Dagster's console logger logs from
    that level, and what the run writes to stdout and stderr (dagster-dbt echoes every dbt
    log line to stdout; MLflow logs and prints registrations to stderr) is appended to
    ``<log_dir>/<job_name>.log`` (default ``<data_dir>/logs``) instead. Every event still
    goes to the instance, so the run's full log stays readable in the UI; a failed run
    still raises unless ``raise_on_error`` is False.
    """
    job = defs.resolve_job_def(job_name)
    run_tags = dict(tags or {})
    if start is not None:
        run_tags[ASSET_PARTITION_RANGE_START_TAG] = start.isoformat()
        run_tags[ASSET_PARTITION_RANGE_END_TAG] = (end or start).isoformat()
    run_config = (
        {"loggers": {"console": {"config": {"log_level": log_level}}}} if log_level else None
    )
    with contextlib.ExitStack() as stack:
        if log_level:
            if log_dir is None:
                from ml_platform.settings import get_settings

                log_dir = get_settings().data_dir / "logs"
            path = log_dir / f"{job_name}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            log = stack.enter_context(open(path, "a"))
            stack.enter_context(contextlib.redirect_stdout(log))
            stack.enter_context(contextlib.redirect_stderr(log))
        return job.execute_in_process(
            run_config=run_config,
            instance=instance or dg.DagsterInstance.get(),
            tags=run_tags,
            raise_on_error=raise_on_error,
        )
