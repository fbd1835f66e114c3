"""Model quality on the full-scale simulator with the quality protocol, and backtest speed.

1. Writes 183 days (2018-04-01..2018-09-30) of the full-scale simulator (5,000 customers,
   10,000 terminals, ~1.7M transactions) as daily Parquet files (cached under
   benchmarks/results/).
2. Runs ``ml-platform backtest`` on them exactly as a user would (the real Dagster assets in
   an isolated temp DAGSTER_HOME, tuning on the shifted validation protocol only): train
   2018-07-25..07-31, 7-day label delay, test 2018-08-08..08-14 (the classic windows).
3. Prints one JSON object: the test metrics of the protocol, the targets, timings.

Usage: ``uv run python benchmarks/quality.py [--train-start 2018-07-25] [--seed 42]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
START, END = date(2018, 4, 1), date(2018, 9, 30)
TARGETS = {"roc_auc": 0.875, "average_precision": 0.70, "card_precision_at_100": 0.31}


def source_dir(seed: int) -> tuple[Path, float]:
    """The cached daily files; (folder, seconds spent writing them now)."""
    out = RESULTS / f"quality_source_seed{seed}"
    n_days = (END - START).days + 1
    if len(list(out.glob("*.parquet"))) == n_days:
        return out, 0.0
    from ml_platform.data.sources import export_days
    from ml_platform.settings import Settings

    t = time.perf_counter()
    export_days(
        Settings(sim_seed=seed, sim_n_customers=5000, sim_n_terminals=10000), START, END, out
    )
    return out, time.perf_counter() - t


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the Dagster subprocess)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--train-start", type=date.fromisoformat, default=date(2018, 7, 25))
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    import pyarrow.parquet as pq

    from ml_platform.training.backtest import BacktestArgs, run_backtest

    src, export_s = source_dir(args.seed)
    n_tx = sum(pq.ParquetFile(f).metadata.num_rows for f in src.glob("*.parquet"))
    ts = args.train_start
    bt = BacktestArgs(
        source=src,
        train_start=ts,
        train_end=ts + timedelta(days=6),
        test_start=ts + timedelta(days=14),
        test_end=ts + timedelta(days=20),
        label_delay=7,
        out=RESULTS / "quality_scores.parquet",
    )
    t = time.perf_counter()
    cpu0 = _cpu()
    result = run_backtest(bt)
    wall = time.perf_counter() - t
    cpu = _cpu() - cpu0
    metrics = {k: result[k] for k in TARGETS}
    print(
        json.dumps(
            {
                "benchmark": "quality",
                "source": f"{START}..{END}: {n_tx} transactions in daily Parquet files",
                "protocol": "train 7 days, delay 7, test 7 days; known-compromised customers "
                "dropped; CP@100 with detected cards removed",
                **metrics,
                "targets": TARGETS,
                "meets_targets": {k: metrics[k] >= v for k, v in TARGETS.items()},
                "card_precision_at_100_per_day": result["card_precision_at_100_per_day"],
                "model_kind": result["model_kind"],
                "model_version": result["model_version"],
                "num_boost_round": result["num_boost_round"],
                "validation": result["validation"],
                "train_window": result["train_window"],
                "test_window": result["test_window"],
                "rows_materialized": result["rows_materialized"],
                "materialized_days": result["materialized_days"],
                "backtest_seconds": round(wall, 1),
                "backtest_cpu_seconds": round(cpu, 1),
                "load_average_1min": round(os.getloadavg()[0], 1),
                "lightgbm_params": result.get("lightgbm_params"),
                "backtest_breakdown_seconds": result["seconds"],
                "source_export_seconds": round(export_s, 1),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
