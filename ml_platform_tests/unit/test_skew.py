"""Serving skew: zero on the batch engine's own numbers, found when a feature is tampered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_platform.features import FEATURE_COLUMNS, build_features
from ml_platform.monitoring.skew import compare_features, serving_skew


def history_and_requests(seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """40 days of history for 30 customers / 20 terminals, then one day of 'API' requests."""
    rng = np.random.default_rng(seed)
    n = 3000
    start = np.datetime64("2025-03-01T00:00:00", "ns")
    secs = np.sort(rng.integers(0, 41 * 86400, n))
    tx = pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64) + 1,
            "tx_datetime": start + secs.astype("timedelta64[s]").astype("timedelta64[ns]"),
            "customer_id": rng.integers(0, 30, n).astype(np.int64),
            "terminal_id": rng.integers(0, 20, n).astype(np.int64),
            "tx_amount": rng.gamma(2.0, 30.0, n).round(2),
            "tx_fraud": (rng.random(n) < 0.05).astype(np.int8),
        }
    )
    last_day = tx["tx_datetime"].dt.normalize().max()
    history = tx[tx["tx_datetime"] < last_day].reset_index(drop=True)
    requests = tx[tx["tx_datetime"] >= last_day].reset_index(drop=True)
    return history, requests


def logged_features(history: pd.DataFrame, requests: pd.DataFrame) -> pd.DataFrame:
    """What a skew-free online engine would log: the same definitions, same history."""
    both = pd.concat([history, requests.assign(tx_fraud=np.int8(0))], ignore_index=True)
    feats = build_features(both, label_delay_days=7)
    feats = feats[feats["transaction_id"].isin(requests["transaction_id"])]
    return feats[["transaction_id", *FEATURE_COLUMNS]].reset_index(drop=True)


def test_no_skew_when_engines_agree():
    history, requests = history_and_requests()
    logged = logged_features(history, requests)
    result = serving_skew(requests, logged, history, FEATURE_COLUMNS, label_delay_days=7)
    assert result.n_logged == len(requests) > 20
    assert result.n_compared == result.n_logged and result.n_missing == 0
    assert result.ok and result.mismatched_features == []
    assert (result.table["n_mismatch"] == 0).all()


def test_injected_mismatch_is_found_with_rate_and_magnitude():
    history, requests = history_and_requests()
    logged = logged_features(history, requests)
    tampered = logged.copy()
    rows = tampered.index[::4]  # a quarter of the requests
    tampered.loc[rows, "customer_id_nb_tx_7day_window"] += 1  # e.g. a stale online state
    tampered.loc[rows[:3], "terminal_id_risk_30day_window"] += 0.5
    result = serving_skew(requests, tampered, history, FEATURE_COLUMNS, label_delay_days=7)
    assert not result.ok
    assert result.mismatched_features == [
        "customer_id_nb_tx_7day_window",
        "terminal_id_risk_30day_window",
    ]
    table = result.table.set_index("feature")
    count = table.loc["customer_id_nb_tx_7day_window"]
    assert count.n_mismatch == len(rows)
    assert count.mismatch_rate == pytest.approx(len(rows) / len(logged))
    assert count.max_abs_diff == pytest.approx(1.0) and count.mean_abs_diff == pytest.approx(1.0)
    assert table.loc["terminal_id_risk_30day_window"].n_mismatch == 3
    assert table.loc["terminal_id_risk_30day_window"].max_abs_diff == pytest.approx(0.5)
    assert table.loc["tx_amount"].n_mismatch == 0


def test_tolerance_and_missing_rows():
    history, requests = history_and_requests()
    logged = logged_features(history, requests)
    noisy = logged.copy()
    noisy["tx_amount"] += 1e-12  # float noise far below the tolerance
    batch = build_features(
        pd.concat([history, requests.assign(tx_fraud=np.int8(0))], ignore_index=True), 7
    )
    batch = batch[batch["transaction_id"].isin(requests["transaction_id"].iloc[1:])]
    result = compare_features(noisy, batch, FEATURE_COLUMNS, tolerance=1e-9)
    assert result.mismatched_features == []
    assert result.n_missing == 1 and not result.ok


def test_missing_feature_column_is_named():
    history, requests = history_and_requests()
    logged = logged_features(history, requests).drop(columns="tx_during_night")
    with pytest.raises(ValueError, match="logged.tx_during_night"):
        serving_skew(requests, logged, history, FEATURE_COLUMNS, label_delay_days=7)
