"""Daily monitoring at full scale: drift + performance + skew for one day (~10k tx) <= 10 s.

Simulates the full-scale world (5,000 customers, 10,000 terminals) for the look-back the
skew check needs, builds features with the batch engine, trains a LightGBM model on a
14-day window (no MLflow: the registry is not what is measured), then times, for the last
day: the Evidently drift report with its HTML (features + prediction score against a
20k-row training reference), labeled performance (AUC, AP, CP@100, catch rate, trailing
AP) and serving skew (every transaction of the day as an API request, features recomputed
by the batch engine over 67 days of history). Prints one JSON object.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

N_CUSTOMERS, N_TERMINALS = 5000, 10_000
DELAY = 7


def main() -> None:
    from ml_platform.data.simulator import generate_day
    from ml_platform.features import FEATURE_COLUMNS, build_features, horizon_days
    from ml_platform.monitoring.performance import daily_performance, trailing_average_precision
    from ml_platform.monitoring.skew import serving_skew
    from ml_platform.training.models import fit_lightgbm

    cols = list(FEATURE_COLUMNS)
    horizon = horizon_days(DELAY)
    day = date(2025, 6, 30)
    first = day - timedelta(days=horizon + 1)
    t = time.perf_counter()
    days = [first + timedelta(days=i) for i in range((day - first).days + 1)]
    tx = pd.concat(
        [generate_day(d, n_customers=N_CUSTOMERS, n_terminals=N_TERMINALS) for d in days],
        ignore_index=True,
    )
    feats = build_features(tx, label_delay_days=DELAY)
    data = tx.merge(feats.drop(columns=["tx_amount"]), on="transaction_id")
    data["tx_date"] = data["tx_datetime"].dt.date
    setup_s = time.perf_counter() - t

    train = data[
        (data["tx_date"] >= day - timedelta(days=35)) & (data["tx_date"] < day - timedelta(days=21))
    ]
    model = fit_lightgbm(train, cols, num_boost_round=100)
    today = data[data["tx_date"] == day].reset_index(drop=True)
    today["score"] = model.score(today[cols])
    reference = train[cols].sample(n=min(20_000, len(train)), random_state=0).reset_index(drop=True)
    reference["score"] = model.score(reference[cols])

    timings: dict[str, float] = {}
    t = time.perf_counter()
    import evidently  # noqa: F401  (cold import, reported apart)

    timings["evidently_import_s"] = time.perf_counter() - t
    from ml_platform.monitoring.drift import compute_drift

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        drift = compute_drift(reference, today, cols, html_path=Path(tmp) / "drift.html")
        timings["drift_report_html_s"] = time.perf_counter() - t
        html_kb = (Path(tmp) / "drift.html").stat().st_size / 1024
    t = time.perf_counter()
    compute_drift(reference, today, cols)
    timings["drift_stat_tests_only_s"] = time.perf_counter() - t

    # performance: the day's predictions (batch) with matured labels + the trailing window
    labeled_days = [day - timedelta(days=DELAY + i) for i in range(3)]
    lab = data[data["tx_date"].isin(labeled_days)].copy()
    lab["score"] = model.score(lab[cols])
    thr = float(np.quantile(lab["score"], 0.99))
    outcomes = pd.DataFrame(
        {
            "transaction_id": lab["transaction_id"],
            "tx_date": lab["tx_date"],
            "customer_id": lab["customer_id"],
            "model_version": "1",
            "source": "batch",
            "score": lab["score"],
            "is_fraud": lab["score"] >= thr,
            "tx_fraud": lab["tx_fraud"],
        }
    )
    t = time.perf_counter()
    perf = daily_performance(outcomes)
    trailing = trailing_average_precision(outcomes, 3)
    timings["performance_s"] = time.perf_counter() - t

    # skew: every transaction of the day answered by the API (logged = batch features)
    history = tx[tx["tx_datetime"] < pd.Timestamp(day)]
    requests = tx[tx["tx_datetime"] >= pd.Timestamp(day)].drop(columns=["tx_fraud"])
    logged = today[["transaction_id", *cols]]
    t = time.perf_counter()
    skew = serving_skew(requests, logged, history, cols, label_delay_days=DELAY)
    timings["skew_s"] = time.perf_counter() - t

    daily_s = timings["drift_report_html_s"] + timings["performance_s"] + timings["skew_s"]
    print(
        json.dumps(
            {
                "benchmark": "monitoring_daily_full_scale",
                "day_transactions": len(today),
                "history_transactions": len(history),
                "reference_rows": len(reference),
                **{k: round(v, 3) for k, v in timings.items()},
                "daily_total_s": round(daily_s, 3),
                "daily_total_with_cold_import_s": round(daily_s + timings["evidently_import_s"], 3),
                "target_s": 10.0,
                "drift_share": round(drift.drift_share, 4),
                "drift_html_kb": round(html_kb, 1),
                "performance_rows": len(perf),
                "trailing_ap": round(float(trailing["trailing_average_precision"].iloc[-1]), 4),
                "skew_compared": skew.n_compared,
                "skew_mismatched_features": skew.mismatched_features,
                "setup_s": round(setup_s, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
