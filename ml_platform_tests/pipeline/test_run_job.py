"""run_job's quiet mode: library output goes to the job's log file, failures still raise."""

from __future__ import annotations

import logging
import sys

import dagster as dg
import pytest

from ml_platform.defs.run import run_job


@dg.asset
def noisy() -> int:
    print("dbt-like line on stdout")
    print("Successfully registered model 'x'.", file=sys.stderr)  # what MLflow's eprint does
    import mlflow  # noqa: F401  (configures the "mlflow" logger's stderr handler)

    logging.getLogger("mlflow.store").warning("mlflow-like warning")
    return 1


@dg.asset
def broken() -> int:
    raise RuntimeError("asset broke")


DEFS = dg.Definitions(
    assets=[noisy, broken],
    jobs=[
        dg.define_asset_job("noisy_job", selection=["noisy"]),
        dg.define_asset_job("broken_job", selection=["broken"]),
    ],
)


def test_quiet_run_sends_stdout_and_stderr_to_the_job_log(settings_env, capsys):
    s = settings_env()
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_job(DEFS, "noisy_job", instance=instance, log_level="WARNING").success
    console = capsys.readouterr()
    assert "dbt-like" not in console.out + console.err
    assert "registered model" not in console.out + console.err
    log = (s.data_dir / "logs" / "noisy_job.log").read_text()
    assert "dbt-like line on stdout" in log
    assert "Successfully registered model 'x'." in log
    assert "mlflow-like warning" in log

    with dg.DagsterInstance.ephemeral() as instance:  # not quiet: the console has it all
        run_job(DEFS, "noisy_job", instance=instance)
    console = capsys.readouterr()
    assert "dbt-like line on stdout" in console.out
    assert "registered model" in console.err


def test_quiet_run_still_raises_on_failure(settings_env):
    settings_env()
    with dg.DagsterInstance.ephemeral() as instance, pytest.raises(Exception, match="broke"):
        run_job(DEFS, "broken_job", instance=instance, log_level="WARNING")


def test_quiet_run_writes_to_the_log_dir_it_is_given(settings_env, tmp_path):
    """The backtest's runs log in its own folder: the caller's data folder stays untouched."""
    s = settings_env()
    with dg.DagsterInstance.ephemeral() as instance:
        run = run_job(DEFS, "noisy_job", instance=instance, log_level="WARNING", log_dir=tmp_path)
        assert run.success
    assert "dbt-like line on stdout" in (tmp_path / "noisy_job.log").read_text()
    assert not (s.data_dir / "logs" / "noisy_job.log").exists()
