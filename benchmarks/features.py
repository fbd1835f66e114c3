"""Feature store benchmark at full scale; prints one JSON object.

1. Simulates 183 days x 5,000 customers x 10,000 terminals (~1.7M transactions; cached as
   Parquet under benchmarks/results/).
2. ``build_features`` in a fresh subprocess: seconds and peak RSS (ru_maxrss).
3. The straightforward pandas reference (per-entity groupby + time-based rolling, the
   Fraud-Detection-Handbook way) in another subprocess: seconds, peak RSS; values must be
   identical (rtol/atol 1e-9) -> ``identical``.
4. Online engine on SQLite and Redis: the store is loaded as of day 170 (like the
   ``online_feature_store`` asset), then the next transactions are replayed (compute, then
   record); p50/p99 of ``compute`` and parity with the batch values.

Usage: ``uv run python benchmarks/features.py [--days 183] [--skip-reference]
[--online-n 3000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
START = date(2025, 1, 1)


def simulate(days: int) -> Path:
    path = RESULTS / f"features_tx_{days}d.parquet"
    if not path.exists():
        from ml_platform.data.simulator import generate_days

        RESULTS.mkdir(parents=True, exist_ok=True)
        tx = generate_days(START, START + timedelta(days=days - 1), seed=42)
        cols = [
            "transaction_id",
            "tx_datetime",
            "customer_id",
            "terminal_id",
            "tx_amount",
            "tx_fraud",
        ]
        tx[cols].to_parquet(path, index=False)
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the pandas reference (kept deliberately straightforward) ------------------------------
def pandas_reference(tx: pd.DataFrame, d: int = 7) -> pd.DataFrame:
    """Per-entity groupby + time-based rolling, as in the Fraud-Detection-Handbook."""
    from ml_platform.features.definitions import FEATURES, NIGHT_LAST_HOUR

    df = tx.sort_values(["tx_datetime", "transaction_id"]).reset_index(drop=True)
    out = pd.DataFrame(index=df.index)
    out["transaction_id"] = df["transaction_id"]
    out["tx_amount"] = df["tx_amount"]
    out["tx_during_weekend"] = (df["tx_datetime"].dt.dayofweek >= 5).astype(int)
    out["tx_during_night"] = (df["tx_datetime"].dt.hour <= NIGHT_LAST_HOUR).astype(int)

    def per_entity(entity: str):
        feats = [f for f in FEATURES if f.entity == entity]

        def fn(g: pd.DataFrame) -> pd.DataFrame:
            s = g.set_index("tx_datetime")
            res = {}
            for f in feats:
                w = f.window_days
                if f.aggregate == "days_since_fraud":
                    # newest known fraud at or before t - d, kept if inside (t-d-w, t-d]
                    day = 86_400 * 10**9
                    times = g["tx_datetime"].to_numpy("datetime64[ns]").view(np.int64)
                    last = np.maximum.accumulate(np.where(g["tx_fraud"] == 1, times, -1))
                    p = np.searchsorted(times, times - d * day, side="right")
                    lf = np.where(p > 0, last[np.maximum(p - 1, 0)], -1)
                    ok = (lf >= 0) & (lf > times - (d + w) * day)
                    res[f.name] = np.where(ok, (times - lf) / day, float(d + w))
                elif f.aggregate in ("days_since_first_fraud", "fraud_share_since_first"):
                    # oldest known fraud inside (t-d-w, t-d]: first fraud at or after its start
                    day = 86_400 * 10**9
                    times = g["tx_datetime"].to_numpy("datetime64[ns]").view(np.int64)
                    is_fraud = g["tx_fraud"].to_numpy() == 1
                    lo = np.searchsorted(times, times - (d + w) * day, side="right")
                    hi = np.searchsorted(times, times - d * day, side="right")
                    pos = np.where(is_fraud, np.arange(len(g)), len(g))
                    nxt = np.append(np.minimum.accumulate(pos[::-1])[::-1], len(g))[lo]
                    ok = nxt < hi
                    if f.aggregate == "days_since_first_fraud":
                        first_t = times[np.minimum(nxt, len(g) - 1)]
                        res[f.name] = np.where(ok, (times - first_t) / day, float(d + w))
                    else:
                        cf = np.concatenate(([0], np.cumsum(is_fraud)))
                        since = np.where(ok, hi - nxt, 1)
                        res[f.name] = np.where(ok, (cf[hi] - cf[lo]) / since, 0.0)
                elif f.aggregate == "fraud_mean_amount":
                    fa = s["tx_amount"] * s["tx_fraud"]
                    tot = (fa.rolling(f"{d + w}D").sum() - fa.rolling(f"{d}D").sum()).to_numpy()
                    fr = s["tx_fraud"]
                    k = (fr.rolling(f"{d + w}D").sum() - fr.rolling(f"{d}D").sum()).to_numpy()
                    res[f.name] = np.where(k > 0, tot / np.where(k > 0, k, 1), 0.0)
                elif f.delayed:
                    n_dw = s["tx_fraud"].rolling(f"{d + w}D").count()
                    n_d = s["tx_fraud"].rolling(f"{d}D").count()
                    fr_dw = s["tx_fraud"].rolling(f"{d + w}D").sum()
                    fr_d = s["tx_fraud"].rolling(f"{d}D").sum()
                    n = (n_dw - n_d).to_numpy()
                    if f.aggregate == "count":
                        res[f.name] = n
                    elif f.aggregate == "fraud_count":
                        res[f.name] = (fr_dw - fr_d).to_numpy()
                    elif f.aggregate == "amount_ratio":
                        am = s["tx_amount"]
                        tot = (am.rolling(f"{d + w}D").sum() - am.rolling(f"{d}D").sum()).to_numpy()
                        m = np.where(n > 0, tot / np.where(n > 0, n, 1), 0.0)
                        a = am.to_numpy()
                        res[f.name] = np.where(m != 0, a / np.where(m != 0, m, 1), 1.0)
                    elif f.aggregate == "risk":
                        fr = (fr_dw - fr_d).to_numpy()
                        res[f.name] = np.where(n > 0, fr / np.where(n > 0, n, 1), 0.0)
                    else:
                        raise ValueError(f.aggregate)
                elif f.aggregate == "count":
                    res[f.name] = s["tx_amount"].rolling(f"{w}D").count().to_numpy()
                elif f.aggregate == "mean_amount":
                    res[f.name] = s["tx_amount"].rolling(f"{w}D").mean().to_numpy()
                elif f.aggregate == "amount_ratio":
                    m = s["tx_amount"].rolling(f"{w}D").mean().to_numpy()
                    a = s["tx_amount"].to_numpy()
                    res[f.name] = np.where(m != 0, a / np.where(m != 0, m, 1), 1.0)
                elif f.aggregate == "seconds_since_prev":
                    gap = g["tx_datetime"].diff().dt.total_seconds().to_numpy()
                    cap = w * 86400.0
                    res[f.name] = np.where(np.isnan(gap) | (gap >= cap), cap, gap)
                else:
                    raise ValueError(f.aggregate)
            return pd.DataFrame(res, index=g.index)

        return df.groupby(entity, group_keys=False)[list(df.columns)].apply(fn)

    for entity in ("customer_id", "terminal_id"):
        part = per_entity(entity)
        for col in part.columns:
            out[col] = part[col]
    from ml_platform.features import FEATURE_COLUMNS

    return out[["transaction_id", *FEATURE_COLUMNS]]


# --- subprocess workers ----------------------------------------------------------------------
def worker(kind: str, src: Path, dst: Path) -> None:
    tx = pd.read_parquet(src)
    rss_in = _peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "batch":
        from ml_platform.features import build_features

        feats = build_features(tx, label_delay_days=7)
    else:
        feats = pandas_reference(tx, d=7)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_rss_mb()
    feats.to_parquet(dst, index=False)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "peak_rss_mb": peak,
                "rss_after_input_mb": rss_in,
            }
        )
    )


def run_worker(kind: str, src: Path) -> tuple[dict, Path]:
    dst = RESULTS / f"features_{kind}.parquet"
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, str(src), str(dst)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1]), dst


# --- online latency -------------------------------------------------------------------------
def online_latency(tx: pd.DataFrame, batch: pd.DataFrame, kind: str, n: int) -> dict:
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.features.online import OnlineFeatureEngine, parse_tx

    if kind == "sqlite":
        from ml_platform.features.stores.sqlite import SQLiteStore

        path = RESULTS / "online_bench.sqlite"
        path.unlink(missing_ok=True)
        store = SQLiteStore(path)
    else:
        from ml_platform.features.stores.redis import RedisStore

        store = RedisStore("redis://127.0.0.1:6379/0", prefix=f"mlp-bench-{uuid.uuid4().hex[:8]}")
    try:
        days = tx["tx_datetime"].dt.normalize()
        last = days.max()
        as_of = last - pd.Timedelta(days=13) - pd.Timedelta(1, "ns")  # end of day -13
        t0 = time.perf_counter()
        stats = store.load(tx[tx["tx_datetime"] <= as_of], as_of)
        load_s = time.perf_counter() - t0
        engine = OnlineFeatureEngine(store, 7)
        nxt = tx[tx["tx_datetime"] > as_of].sort_values(["tx_datetime", "transaction_id"]).head(n)
        engine.record_labels(tx[tx["tx_datetime"] <= nxt["tx_datetime"].max()])
        reqs = [parse_tx(r) for r in nxt.drop(columns="tx_fraud").to_dict("records")]
        lat, cpu, rec, values = [], [], [], []
        for r in reqs:
            a, c = time.perf_counter(), time.thread_time()
            v = engine.compute(r)
            b = time.perf_counter()
            cpu.append(time.thread_time() - c)
            engine.record(r)
            rec.append(time.perf_counter() - b)
            lat.append(b - a)
            values.append(v)
        want = batch.set_index("transaction_id").loc[nxt["transaction_id"], FEATURE_COLUMNS]
        ok = bool(np.allclose(np.vstack(values), want.to_numpy(float), rtol=1e-9, atol=1e-9))
        lat_us = np.array(lat) * 1e6
        return {
            "load_seconds": round(load_s, 2),
            "loaded_rows": stats["rows"],
            "entities": stats["customer_id"] + stats["terminal_id"],
            "n": len(reqs),
            "compute_p50_ms": round(float(np.percentile(lat_us, 50)) / 1000, 4),
            "compute_p99_ms": round(float(np.percentile(lat_us, 99)) / 1000, 4),
            # CPU time of the calling thread: what the engine costs without preemption by
            # other processes (the wall figures include it on a shared machine)
            "compute_cpu_p50_ms": round(float(np.percentile(cpu, 50)) * 1000, 4),
            "compute_cpu_p99_ms": round(float(np.percentile(cpu, 99)) * 1000, 4),
            "record_p50_ms": round(float(np.percentile(rec, 50)) * 1000, 4),
            "parity_with_batch": ok,
        }
    finally:
        store.clear()
        store.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--days", type=int, default=183)
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--online-n", type=int, default=3000)
    p.add_argument("--worker", nargs=3, metavar=("KIND", "SRC", "DST"))
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]))
        return

    t0 = time.perf_counter()
    src = simulate(args.days)
    sim_s = time.perf_counter() - t0
    tx = pd.read_parquet(src)
    result: dict = {
        "benchmark": "features",
        "n_transactions": len(tx),
        "days": args.days,
        "simulate_seconds": round(sim_s, 1),
    }
    fast, fast_path = run_worker("batch", src)
    result["build_features_seconds"] = round(fast["seconds"], 3)
    result["build_features_cpu_seconds"] = round(fast["cpu_seconds"], 3)
    result["build_features_peak_rss_mb"] = round(fast["peak_rss_mb"], 1)
    result["build_features_rss_after_input_mb"] = round(fast["rss_after_input_mb"], 1)
    batch = pd.read_parquet(fast_path)
    if not args.skip_reference:
        ref, ref_path = run_worker("pandas", src)
        ref_df = pd.read_parquet(ref_path).set_index("transaction_id").loc[batch["transaction_id"]]
        cols = [c for c in batch.columns if c != "transaction_id"]
        a, b = batch[cols].to_numpy(float), ref_df[cols].to_numpy(float)
        result["pandas_reference_seconds"] = round(ref["seconds"], 2)
        result["pandas_reference_cpu_seconds"] = round(ref["cpu_seconds"], 2)
        result["pandas_reference_peak_rss_mb"] = round(ref["peak_rss_mb"], 1)
        result["speedup"] = round(ref["seconds"] / fast["seconds"], 1)
        result["speedup_cpu"] = round(ref["cpu_seconds"] / fast["cpu_seconds"], 1)
        result["identical"] = bool(np.allclose(a, b, rtol=1e-9, atol=1e-9))
        result["max_abs_diff"] = float(np.max(np.abs(a - b)))
    for kind in ("sqlite", "redis"):
        result[f"online_{kind}"] = online_latency(tx, batch, kind, args.online_n)
    from ml_platform.features import FEATURE_VERSION

    result["feature_version"] = FEATURE_VERSION
    result["load_average_1m"] = round(os.getloadavg()[0], 1)  # shared 2-core machine
    print(json.dumps(result))


if __name__ == "__main__":
    main()
