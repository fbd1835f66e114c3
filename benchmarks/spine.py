"""Benchmark: the spine job (ingestion + dbt warehouse) over the demo range, as `make demo` runs it.

One single-run backfill of every demo day, in-process, against a fresh SQLite Dagster
instance and data folder in a temp directory (so it never touches ./data). Prints one JSON
object: wall time split into definitions load, run, and each step; rows; Dagster events
written; the load average, since the 2-core machine is shared.

    uv run python benchmarks/spine.py [--days N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=None, help="first N demo days only")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mlp-bench-spine-"))
    os.environ["ML_PLATFORM_DATA_DIR"] = str(root / "data")
    os.environ["ML_PLATFORM_DAGSTER_HOME"] = str(root / "dagster_home")
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")

    t0 = time.perf_counter()
    from ml_platform.demo import prepare
    from ml_platform.settings import get_settings

    s = get_settings()
    prepare()
    import dagster as dg

    from ml_platform.definitions import defs
    from ml_platform.defs.run import run_job

    load_s = time.perf_counter() - t0
    end = s.end_date if args.days is None else s.start_date + timedelta(days=args.days - 1)

    t = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # dbt's log goes to stdout; keep it JSON only
        result = run_job(defs, "spine_job", start=s.start_date, end=end)
    run_s = time.perf_counter() - t

    steps = {
        e.step_key: round(e.event_specific_data.duration_ms / 1000, 2)
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_SUCCESS
    }
    from ml_platform.summary import collect_summary

    summary = collect_summary(s)
    shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "benchmark": "spine_job over the demo range (single-run backfill, in-process)",
                "days": (end - s.start_date).days + 1,
                "customers": s.sim_n_customers,
                "terminals": s.sim_n_terminals,
                "load_definitions_s": round(load_s, 1),
                "run_s": round(run_s, 1),
                "steps_s": steps,
                "dagster_events": len(result.all_events),
                "rows": {**summary["lake"], **summary["warehouse"]},
                "cpu_user_s": round(resource.getrusage(resource.RUSAGE_SELF).ru_utime, 1),
                "cpu_children_s": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime, 1),
                "load_average_1m": round(os.getloadavg()[0], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
