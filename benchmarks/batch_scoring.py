"""Batch scoring throughput at full scale; prints one JSON object.

Set-up (not timed): a temporary data dir with a month of full-scale simulated days plus the
feature look-back (horizon = longest window + label delay) written to the lake as
``validated_transactions``, and a LightGBM champion trained with the training code
(early stopping on a time-based validation window) and promoted in the MLflow registry.

Timed, two ways, both "read, features, predict, write" for the whole month in one run:
1. ``core``: the plain-Python path (``serving.scoring.score_transactions``): read every
   partition of the month + look-back, batch features, champion score, write 30 daily
   ``batch_predictions`` partitions.
2. ``dagster``: the real assets ``fraud_event_features`` + ``fraud_batch_predictions``
   materialized as ONE single-run backfill over the month (in-process executor, the lake
   IO manager reading the look-back), i.e. what the platform runs.
Throughput = scored transactions / minute (target >= 5M/min). Rows read (look-back
included) are reported too.

Usage: ``uv run python benchmarks/batch_scoring.py [--days 30] [--customers 5000]
[--terminals 10000] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

START = date(2025, 1, 1)


def configure(data_dir: Path, start: date, end: date, customers: int, terminals: int) -> None:
    """Point the platform at ``data_dir`` (env, as the CLI would) before anything loads."""
    os.environ.update(
        {
            "ML_PLATFORM_DATA_DIR": str(data_dir),
            "ML_PLATFORM_DAGSTER_HOME": str(data_dir / "dagster_home"),
            "DAGSTER_HOME": str(data_dir / "dagster_home"),
            "ML_PLATFORM_START_DATE": start.isoformat(),
            "ML_PLATFORM_END_DATE": end.isoformat(),
            "ML_PLATFORM_SIM_N_CUSTOMERS": str(customers),
            "ML_PLATFORM_SIM_N_TERMINALS": str(terminals),
            "DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "BENTOML_DO_NOT_TRACK": "true",
            "DAGSTER_DISABLE_TELEMETRY": "true",
        }
    )
    (data_dir / "dagster_home").mkdir(parents=True, exist_ok=True)
    (data_dir / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    from ml_platform.settings import get_settings

    get_settings.cache_clear()


def prepare(
    data_dir: Path, start: date, end: date, *, train_days: int = 7, challenger: bool = False
) -> dict:
    """Simulated lake for ``start..end`` + a promoted champion (and optionally a challenger).

    Returns the set-up facts (rows, seconds, model version, trees).
    """
    import numpy as np

    from ml_platform.data import lake
    from ml_platform.data.simulator import simulate_day
    from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION, build_features
    from ml_platform.settings import get_settings
    from ml_platform.training import datasets, metrics, models, registry

    s = get_settings()
    t0 = time.perf_counter()
    frames = []
    for i in range((end - start).days + 1):
        day = start + timedelta(days=i)
        df = simulate_day(day, s)
        lake.write_partition(df, s.lake_dir, "validated_transactions", day)
        frames.append(df)
    import pandas as pd

    tx = pd.concat(frames, ignore_index=True)
    t_sim = time.perf_counter() - t0
    windows = datasets.platform_windows(
        end, train_days=train_days, valid_days=7, label_delay=s.label_delay_days
    )
    span = tx[tx["tx_datetime"] >= pd.Timestamp(windows.train_start) - pd.Timedelta(days=70)]
    labeled = datasets.join_labels(build_features(span, s.label_delay_days), span)
    train, valid = datasets.split(labeled, windows)
    t1 = time.perf_counter()
    cols = list(FEATURE_COLUMNS)
    baseline = models.fit_baseline(train, cols)
    base_m = metrics.validation_metrics(valid, baseline.score(valid))
    versions = []
    for params in ({}, {"num_leaves": 15, "learning_rate": 0.1})[: 2 if challenger else 1]:
        gbm = models.fit_lightgbm(train, cols, valid, params=params, threads=2)
        m = metrics.validation_metrics(valid, gbm.score(valid))
        thr = models.best_f1_threshold(valid["tx_fraud"].to_numpy(), gbm.score(valid))
        cands = models.CandidateSet(baseline, gbm, base_m, m, gbm, "benchmark", thr, m)
        info = registry.log_training_run(
            cands,
            train,
            valid,
            windows,
            model_name=s.model_name,
            use_case="fraud",
            feature_version=FEATURE_VERSION,
        )
        versions.append((info.version, gbm.best_iteration, m["average_precision"]))
    registry.promote(
        versions[0][0], model_name=s.model_name, who="benchmark", why="benchmark champion"
    )
    if challenger:
        registry.set_alias(
            "challenger", versions[1][0], model_name=s.model_name, who="benchmark", why="shadow"
        )
    return {
        "simulated_days": (end - start).days + 1,
        "simulated_rows": len(tx),
        "simulate_seconds": round(t_sim, 1),
        "train_seconds": round(time.perf_counter() - t1, 1),
        "champion_version": versions[0][0],
        "champion_trees": int(versions[0][1]),
        "champion_valid_ap": round(float(versions[0][2]), 4),
        "challenger_version": versions[1][0] if challenger else None,
        "fraud_rate": round(float(np.mean(tx["tx_fraud"])), 5),
    }


def time_core(days: list[date], lookback: list[date]) -> dict:
    from ml_platform.data import lake
    from ml_platform.serving.scoring import load_model, score_transactions
    from ml_platform.settings import get_settings

    s = get_settings()
    model = load_model("champion", model_name=s.model_name)
    t0 = time.perf_counter()
    tx = lake.read_partitions(s.lake_dir, "validated_transactions", [*lookback, *days])
    t_read = time.perf_counter()
    parts = score_transactions(tx, model, days, s.label_delay_days)
    t_score = time.perf_counter()
    lake.write_partitions(parts, s.lake_dir, "batch_predictions_core")
    t_end = time.perf_counter()
    scored = sum(len(p) for p in parts.values())
    total = t_end - t0
    # breakdown (not part of the total): the champion alone on the scored rows' features
    from ml_platform.features import FEATURE_COLUMNS

    x = lake.read_partitions(s.lake_dir, "transaction_features", days, missing_ok=True)
    predict_s = None
    if len(x) == scored:
        t = time.perf_counter()
        model.score(x[FEATURE_COLUMNS].to_numpy())
        predict_s = round(time.perf_counter() - t, 2)
    return {
        "predict_only_s": predict_s,
        "rows_read": len(tx),
        "rows_scored": scored,
        "seconds": round(total, 2),
        "read_s": round(t_read - t0, 2),
        "features_and_predict_s": round(t_score - t_read, 2),
        "write_s": round(t_end - t_score, 2),
        "tx_per_min": round(scored / total * 60),
    }


def time_dagster(days: list[date]) -> dict:
    import dagster as dg

    from ml_platform.data import lake
    from ml_platform.defs import build_definitions, names
    from ml_platform.defs.context import fraud_context
    from ml_platform.defs.run import run_job
    from ml_platform.settings import get_settings

    s = get_settings()
    ctx = fraud_context(s)
    job = dg.define_asset_job(
        "batch_scoring_bench",
        selection=dg.AssetSelection.assets(
            ctx.key(names.EVENT_FEATURES), ctx.key(names.BATCH_PREDICTIONS)
        ),
    )
    defs = dg.Definitions.merge(
        build_definitions(
            [ctx.use_case.name], settings=s, stages=(names.INGESTION, names.FEATURES, names.SERVING)
        ),
        dg.Definitions(jobs=[job]),
    )
    instance = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    result = run_job(defs, "batch_scoring_bench", start=days[0], end=days[-1], instance=instance)
    total = time.perf_counter() - t0
    assert result.success
    scored = sum(len(lake.read_partitions(s.lake_dir, "batch_predictions", [d])) for d in days)
    steps = {}
    for ev in result.all_events:
        if ev.event_type_value == "STEP_SUCCESS":
            steps[ev.step_key] = round(ev.event_specific_data.duration_ms / 1000, 2)
    return {
        "rows_scored": scored,
        "seconds": round(total, 2),
        "step_seconds": steps,
        "tx_per_min": round(scored / total * 60),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30, help="days scored in the run")
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--terminals", type=int, default=10000)
    ap.add_argument("--keep", type=Path, default=None, help="keep the data dir here")
    ap.add_argument("--train-days", type=int, default=7, help="champion's training window")
    args = ap.parse_args()

    from ml_platform.features.definitions import horizon_days

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="mlp-batch-bench-"))
    look = horizon_days(7)
    first_scored = START + timedelta(days=look)
    end = first_scored + timedelta(days=args.days - 1)
    configure(data_dir, START, end, args.customers, args.terminals)
    try:
        setup = prepare(data_dir, START, end, train_days=args.train_days)
        days = [first_scored + timedelta(days=i) for i in range(args.days)]
        lookback = [START + timedelta(days=i) for i in range(look)]
        dagster = time_dagster(days)
        core = time_core(days, lookback)
        target = 5_000_000
        out = {
            "benchmark": "batch_scoring",
            "scale": {"customers": args.customers, "terminals": args.terminals},
            "scored_days": args.days,
            "lookback_days": look,
            "setup": setup,
            "core": core,
            "dagster_single_run": dagster,
            "target_tx_per_min": target,
            "passed": {
                "core": core["tx_per_min"] >= target,
                "dagster": dagster["tx_per_min"] >= target,
            },
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(out))
    finally:
        if args.keep is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
