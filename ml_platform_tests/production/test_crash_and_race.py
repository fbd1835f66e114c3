"""Crash and concurrency safety of the storage layer.

- SIGKILL in the middle of writing a partition: the half-written file is never visible as
  a partition (nor to DuckDB/dbt's glob), and re-running the job yields output identical
  to an uninterrupted run;
- two writers racing for the DuckDB warehouse: without coordination the second one fails
  (DuckDB's single-writer rule, shown here so the test can fail), with
  ``ml_platform.data.locks.warehouse_lock`` both complete and the file stays consistent.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.data import lake
from ml_platform.settings import PROJECT_DIR
from ml_platform_tests.production import race_worker
from ml_platform_tests.production.jobs import JOB, TABLES, ingestion_defs

pytestmark = [pytest.mark.production, pytest.mark.slow]

START, END = date(2025, 4, 1), date(2025, 4, 3)
DAYS = [START + timedelta(days=i) for i in range((END - START).days + 1)]
KILL_IN = "validated_transactions/date=2025-04-02/"  # the partition write to die in
ROUNDS = 4


def _run_in_process(settings_env, data_dir: Path) -> None:
    import dagster as dg

    from ml_platform.defs.run import run_job

    settings_env(data_dir=data_dir)
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_job(ingestion_defs(), JOB, start=START, end=END, instance=instance).success


def _table(data_dir: Path, table: str) -> dict[str, pd.DataFrame]:
    lake_dir = data_dir / "lake"
    return {
        d: pd.read_parquet(lake.partition_path(lake_dir, table, d))
        for d in lake.list_partitions(lake_dir, table)
    }


def test_sigkill_mid_partition_leaves_nothing_partial_and_rerun_is_identical(
    settings_env, tmp_path
):
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"
    # Raw days 1-3 are written first (their own step), then validated days 1-3: die inside
    # validated day 2.
    env = os.environ | {
        "ML_PLATFORM_DATA_DIR": str(crashed / "data"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ML_PLATFORM_DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "ML_PLATFORM_PROFILE": "embedded",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml_platform_tests.production.crash_driver",
            KILL_IN,
            START.isoformat(),
            END.isoformat(),
        ],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"KILLING during the write of {crashed / 'data' / 'lake' / KILL_IN}" in proc.stdout

    lake_dir = crashed / "data" / "lake"
    table_dir = lake_dir / "validated_transactions"
    # the half-written bytes are on disk, but only as a hidden temp file...
    leftovers = list(table_dir.glob("date=2025-04-02/.*.tmp"))
    assert leftovers and leftovers[0].stat().st_size > 0
    # ...never as a partition: not to the lake API, not to DuckDB/dbt's table glob. Days 1
    # and 3 are written by the other thread: each is there whole or not at all.
    visible = lake.list_partitions(lake_dir, "validated_transactions")
    assert "2025-04-02" not in visible and set(visible) <= {"2025-04-01", "2025-04-03"}
    assert sorted(glob.glob(lake.table_glob(lake_dir, "validated_transactions"))) == [
        str(lake.partition_path(lake_dir, "validated_transactions", d)) for d in visible
    ]
    assert lake.list_partitions(lake_dir, "raw_transactions") == [d.isoformat() for d in DAYS]
    for df in _table(crashed / "data", "validated_transactions").values():
        assert len(df) > 0  # every visible partition reads back whole

    # The re-run completes and equals an uninterrupted run, partition by partition.
    _run_in_process(settings_env, crashed / "data")
    _run_in_process(settings_env, clean / "data")
    for table in TABLES:
        got, want = _table(crashed / "data", table), _table(clean / "data", table)
        assert sorted(got) == sorted(want) == [d.isoformat() for d in DAYS], table
        for day in want:
            pd.testing.assert_frame_equal(got[day], want[day], check_exact=True)


# --- the DuckDB warehouse: one writer at a time ----------------------------------------------
def _race(path: Path, use_lock: bool, rounds: int = ROUNDS) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    barrier, errors = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=race_worker.writer, args=(str(path), w, rounds, use_lock, barrier, errors)
        )
        for w in (0, 1)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    out = []
    while not errors.empty():
        out.append(errors.get())
    return out


def test_two_writers_race_for_the_warehouse_without_corrupting_it(tmp_path):
    import duckdb

    unguarded = _race(tmp_path / "unguarded.duckdb", use_lock=False)
    # a lock conflict, or (both creating the file at once) the other's half-made file
    refusals = ("lock", "not a valid duckdb database file")
    assert unguarded and all(any(r in e.lower() for r in refusals) for e in unguarded), (
        "without coordination DuckDB refuses the second writer"
    )
    path = tmp_path / "warehouse.duckdb"
    assert _race(path, use_lock=True) == []
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT worker, round, count(*), min(n), max(n) FROM facts GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    n = race_worker.ROWS
    assert rows == [(w, i, n, 0, n - 1) for w in (0, 1) for i in range(ROUNDS)]


def test_warehouse_lock_is_released_when_its_holder_is_killed(tmp_path):
    """flock belongs to the process: a SIGKILLed writer never leaves the warehouse locked."""
    from ml_platform.data.locks import LockTimeout, warehouse_lock

    path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from ml_platform.data.locks import warehouse_lock\n"
            f"with warehouse_lock(Path({str(path)!r})):\n"
            "    print('locked', flush=True); time.sleep(60)",
        ],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockTimeout, match="still locked"), warehouse_lock(path, timeout=0.3):
            pass
        holder.kill()
        holder.wait(10)
        with warehouse_lock(path, timeout=5):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
