"""Serving skew: zero when the online engine logged the features, found when one is tampered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.contract import TRANSACTION_ID, TX_DATETIME
from ml_platform.features import FEATURE_COLUMNS, build_features
from ml_platform.features.online import OnlineFeatureEngine
from ml_platform.features.stores.sqlite import SQLiteStore
from ml_platform.monitoring.skew import REQUEST_COLUMNS, compare_features, serving_skew


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


def online_logged_features(
    history: pd.DataFrame,
    requests: pd.DataFrame,
    store_path: Path,
    label_delay_days: int = 7,
) -> pd.DataFrame:
    """What the API logs: the online engine on a store bulk-loaded with ``history`` as of
    the end of its last day (the ``online_feature_store`` asset's path), then each request
    computed and recorded in event order, from the request fields only.

    Labels are recorded as soon as known (as the parity proof does): the engine itself must
    ignore those newer than t - d.
    """
    store = SQLiteStore(store_path, label_delay_days=label_delay_days)
    try:
        engine = OnlineFeatureEngine(store, label_delay_days=label_delay_days)
        as_of = requests[TX_DATETIME].min().normalize() - pd.Timedelta(1, "ns")
        store.load(history, as_of)
        engine.record_labels(history)
        ordered = requests.sort_values([TX_DATETIME, TRANSACTION_ID])
        rows = ordered[list(REQUEST_COLUMNS)].to_dict("records")
        x = np.vstack([engine.compute_and_record(r) for r in rows])
    finally:
        store.close()
    out = pd.DataFrame(x, columns=FEATURE_COLUMNS)
    out.insert(0, TRANSACTION_ID, ordered[TRANSACTION_ID].to_numpy())
    return out


@pytest.fixture
def logged(tmp_path: Path) -> pd.DataFrame:
    history, requests = history_and_requests()
    return online_logged_features(history, requests, tmp_path / "online.sqlite")


def test_no_skew_when_engines_agree(logged: pd.DataFrame):
    history, requests = history_and_requests()
    result = serving_skew(requests, logged, history, FEATURE_COLUMNS, label_delay_days=7)
    assert result.n_logged == len(requests) > 20
    assert result.n_compared == result.n_logged and result.n_missing == 0
    assert result.ok and result.mismatched_features == []
    assert (result.table["n_mismatch"] == 0).all()


def test_injected_mismatch_is_found_with_rate_and_magnitude(logged: pd.DataFrame):
    history, requests = history_and_requests()
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


def test_tolerance_and_missing_rows(logged: pd.DataFrame):
    history, requests = history_and_requests()
    noisy = logged.copy()
    noisy["tx_amount"] += 1e-12  # float noise far below the tolerance
    batch = build_features(
        pd.concat([history, requests.assign(tx_fraud=np.int8(0))], ignore_index=True), 7
    )
    batch = batch[batch["transaction_id"].isin(requests["transaction_id"].iloc[1:])]
    result = compare_features(noisy, batch, FEATURE_COLUMNS, tolerance=1e-9)
    assert result.mismatched_features == []
    assert result.n_missing == 1 and not result.ok


def test_missing_feature_column_is_named(logged: pd.DataFrame):
    history, requests = history_and_requests()
    logged = logged.drop(columns="tx_during_night")
    with pytest.raises(ValueError, match="logged.tx_during_night"):
        serving_skew(requests, logged, history, FEATURE_COLUMNS, label_delay_days=7)
