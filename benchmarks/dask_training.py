"""Training and batch scoring on Dask vs in one process, at full scale; prints one JSON object.

Set-up (not timed): the full-scale simulator (5,000 customers, 10,000 terminals) for the
platform's windows (14 training days, 7-day label delay, 7 validation days) plus the
features' look-back, features and labels written to a temporary lake.

Timed:
1. ``local``: ``models.train_candidates`` in this process (2 LightGBM threads), as the
   platform trains today.
2. ``dask``: the same call with a client of a 2-worker ``LocalCluster`` (processes, one
   thread each, ``--memory-limit`` per worker) and ``dask_min_rows=1``: the baseline by
   distributed Newton steps, LightGBM through ``lightgbm.dask``; validation AP of both and
   the difference (target: within +-0.01), each worker's peak RSS.
3. ``scoring``: the LightGBM model scoring every featured day per partition on the workers
   (read, score, write each day's ``batch_predictions``), vs the local ``score_by_day`` on
   the same days (read, score, write); then the monitoring inputs gathered from the
   workers (drift reference sample, labelled performance per day).

Usage: ``uv run python benchmarks/dask_training.py [--customers 5000] [--terminals 10000]
[--memory-limit 3GiB]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

END = date(2025, 6, 30)  # the as-of day of the training run


def _rss_mb() -> float:
    """Peak RSS of this process (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _imported_rss_mb() -> float:
    """A worker's peak RSS once the training, scoring and monitoring code is imported."""
    import lightgbm  # noqa: F401
    import sklearn.linear_model  # noqa: F401

    import ml_platform.monitoring.dask_gather  # noqa: F401
    import ml_platform.serving.dask_scoring  # noqa: F401
    import ml_platform.training.dask_fit  # noqa: F401

    return _rss_mb()


def prepare(data_dir: Path, customers: int, terminals: int) -> dict:
    """Full-scale lake: transactions and features of every day the windows need."""
    import pandas as pd

    from ml_platform.data import lake
    from ml_platform.data.simulator import simulate_day
    from ml_platform.features import build_features_for_days
    from ml_platform.features.definitions import horizon_days
    from ml_platform.settings import Settings
    from ml_platform.training import datasets

    s = Settings(data_dir=data_dir, sim_n_customers=customers, sim_n_terminals=terminals)
    windows = datasets.platform_windows(END, 14, 7, s.label_delay_days)
    first = windows.train_start - timedelta(days=horizon_days(s.label_delay_days))
    days = [first + timedelta(days=i) for i in range((END - first).days + 1)]
    t0 = time.perf_counter()
    tx = pd.concat([simulate_day(d, s) for d in days], ignore_index=True)
    featured = [*windows.train_days, *windows.valid_days]
    feats = build_features_for_days(tx, featured, s.label_delay_days)
    for table, frame, on in (
        ("validated_transactions", tx, days),
        ("transaction_features", feats, featured),
    ):
        lake.write_partitions(lake.split_by_day(frame, on), s.lake_dir, table)
    return {
        "settings": s,
        "windows": windows,
        "featured_days": featured,
        "simulated_rows": len(tx),
        "featured_rows": len(feats),
        "prepare_seconds": round(time.perf_counter() - t0, 1),
    }


def _candidates_summary(cands, seconds: float) -> dict:
    gbm = cands.lightgbm
    return {
        "seconds": round(seconds, 1),
        "lightgbm_valid_ap": round(cands.lightgbm_metrics["average_precision"], 4),
        "baseline_valid_ap": round(cands.baseline_metrics["average_precision"], 4),
        "lightgbm_rounds": gbm.best_iteration,
        "chosen": cands.chosen.kind,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--terminals", type=int, default=10000)
    p.add_argument("--memory-limit", default="3GiB")
    args = p.parse_args()
    os.environ.update({"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true"})

    from distributed import Client, LocalCluster

    from ml_platform.data import lake
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.monitoring import daily, dask_gather
    from ml_platform.monitoring import performance as perf
    from ml_platform.serving import dask_scoring, scoring
    from ml_platform.training import datasets, models

    cols = list(FEATURE_COLUMNS)
    out: dict = {"load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="dask_training_") as tmp:
        facts = prepare(Path(tmp), args.customers, args.terminals)
        s, w = facts.pop("settings"), facts.pop("windows")
        featured = facts.pop("featured_days")
        out["setup"] = facts
        train = datasets.load_labeled(s.lake_dir, w.train_days)
        valid = datasets.load_labeled(s.lake_dir, w.valid_days)
        out["setup"] |= {"train_rows": len(train), "valid_rows": len(valid)}
        print(f"set-up done: {out['setup']}", file=sys.stderr)

        t = time.perf_counter()
        local = models.train_candidates(train, valid, cols, threads=2)
        out["local"] = _candidates_summary(local, time.perf_counter() - t)
        out["local"]["driver_peak_rss_mb"] = round(_rss_mb())
        print(f"local: {out['local']}", file=sys.stderr)

        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit=args.memory_limit,
            dashboard_address=":0",
        )
        with cluster, Client(cluster) as client:
            idle = max(client.run(_imported_rss_mb).values())
            t = time.perf_counter()
            on_dask = models.train_candidates(
                train, valid, cols, threads=2, client=client, dask_min_rows=1
            )
            out["dask"] = _candidates_summary(on_dask, time.perf_counter() - t)
            peaks = client.run(_rss_mb)
            out["dask"] |= {
                "workers": 2,
                "memory_limit": args.memory_limit,
                "worker_idle_rss_mb": round(idle),
                "worker_peak_rss_mb": sorted(round(v, 1) for v in peaks.values()),
                # training rows a worker holds per GiB above its idle footprint
                "train_rows_per_worker_per_gib": round(
                    len(train) / len(peaks) / ((max(peaks.values()) - idle) / 1024)
                ),
                "lightgbm_ap_difference": round(
                    out["dask"]["lightgbm_valid_ap"] - out["local"]["lightgbm_valid_ap"], 4
                ),
                "baseline_ap_difference": round(
                    out["dask"]["baseline_valid_ap"] - out["local"]["baseline_valid_ap"], 4
                ),
                "ap_within_0.01": abs(
                    out["dask"]["lightgbm_valid_ap"] - out["local"]["lightgbm_valid_ap"]
                )
                <= 0.01,
            }
            print(f"dask: {out['dask']}", file=sys.stderr)

            booster = local.lightgbm.model
            model = scoring.ScoringModel(
                "bench", "1", local.threshold, scoring.native_predict_fn(booster), booster
            )
            t = time.perf_counter()
            feats = lake.read_partitions(s.lake_dir, "transaction_features", featured)
            parts = scoring.score_by_day(feats, model, featured)
            lake.write_partitions(parts, s.lake_dir, "local_predictions")
            local_s = time.perf_counter() - t
            del feats
            t = time.perf_counter()
            counts = dask_scoring.score_days(
                client,
                model,
                s.lake_dir,
                "transaction_features",
                featured,
                write_table="batch_predictions",
            )
            dask_s = time.perf_counter() - t
            rows = sum(c["rows"] for c in counts.values())
            out["scoring"] = {
                "partitions": len(featured),
                "rows": rows,
                "rows_per_partition": round(rows / len(featured)),
                "local_seconds": round(local_s, 2),
                "dask_seconds": round(dask_s, 2),
                "local_rows_per_s": round(rows / local_s),
                "dask_rows_per_s": round(rows / dask_s),
                "dask_seconds_per_partition": round(dask_s / len(featured), 3),
            }
            t = time.perf_counter()
            ref = dask_gather.reference_sample(
                client,
                s.lake_dir,
                "transaction_features",
                w.train_days,
                cols,
                s.drift_reference_max_rows,
            )
            ref_s = time.perf_counter() - t
            t = time.perf_counter()
            table = dask_gather.daily_performance(client, s, featured)
            perf_s = time.perf_counter() - t
            t = time.perf_counter()
            local_table = perf.daily_performance(daily.outcomes_from_lake(s, featured))
            local_perf_s = time.perf_counter() - t
            out["monitoring"] = {
                "reference_rows": len(ref),
                "reference_sample_seconds": round(ref_s, 2),
                "performance_days": len(table),
                "performance_dask_seconds": round(perf_s, 2),
                "performance_local_seconds": round(local_perf_s, 2),
                "performance_equal": bool(table.equals(local_table)),
            }
            out["dask"]["worker_peak_rss_mb_after_scoring"] = sorted(
                round(v, 1) for v in client.run(_rss_mb).values()
            )
    out["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
