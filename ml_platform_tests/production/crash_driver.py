"""Run the ingestion job and SIGKILL this very process in the middle of a partition write.

``python -m ml_platform_tests.production.crash_driver KILL_IN START END``: the Parquet write
whose path contains KILL_IN (e.g. ``validated_transactions/date=2025-04-02/``) stops half-way
(half the bytes on disk, as when a machine dies mid-write) and the process is killed with
SIGKILL: no ``finally``, no ``except``, no atexit runs. The lake writes a run's partitions
from two threads, so the partition is chosen by path, not by the order of the writes.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import date

import pandas as pd


def main() -> None:
    kill_in, start, end = sys.argv[1], date.fromisoformat(sys.argv[2]), sys.argv[3]
    real = pd.DataFrame.to_parquet

    def to_parquet_then_die(self, path, *args, **kwargs):
        if kill_in not in str(path):
            return real(self, path, *args, **kwargs)
        real(self, path, *args, **kwargs)
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)
        print(f"KILLING during the write of {path}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    pd.DataFrame.to_parquet = to_parquet_then_die

    import dagster as dg

    from ml_platform.defs.run import run_job
    from ml_platform.runtime import ensure_dagster_home
    from ml_platform_tests.production.jobs import JOB, ingestion_defs

    ensure_dagster_home()
    run_job(
        ingestion_defs(),
        JOB,
        start=start,
        end=date.fromisoformat(end),
        instance=dg.DagsterInstance.get(),
    )
    print("FINISHED WITHOUT BEING KILLED", flush=True)


if __name__ == "__main__":
    main()
