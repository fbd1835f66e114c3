"""Windows, matured labels and the point-in-time leakage guard."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.simulator import generate_days
from ml_platform.features import build_features
from ml_platform.training import datasets


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    df = generate_days(
        date(2025, 4, 1), date(2025, 4, 20), seed=3, n_customers=150, n_terminals=300
    )
    return df.drop(columns=["tx_fraud_scenario"], errors="ignore")


def test_platform_windows_use_only_matured_labels_with_a_delay_gap():
    w = datasets.platform_windows(date(2025, 5, 31), train_days=14, valid_days=7, label_delay=7)
    assert w.valid_end == date(2025, 5, 24)  # newest day whose labels are known
    assert w.valid_start == date(2025, 5, 18)
    assert (w.valid_start - w.train_end).days - 1 == 7
    assert len(w.train_days) == 14


@pytest.mark.parametrize(
    ("valid_start", "match"),
    [(date(2025, 1, 10), "overlaps"), (date(2025, 1, 14), "label delay")],
)
def test_windows_refuse_overlap_and_missing_gap(valid_start, match):
    with pytest.raises(ValueError, match=match):
        datasets.Windows(date(2025, 1, 1), date(2025, 1, 10), valid_start, date(2025, 1, 30), 7)


def test_inner_validation_is_the_protocol_shifted_back():
    w = datasets.inner_validation_windows(date(2025, 7, 25), date(2025, 7, 31), 7)
    assert (w.train_start, w.train_end) == (date(2025, 7, 11), date(2025, 7, 17))
    assert (w.valid_start, w.valid_end) == (date(2025, 7, 25), date(2025, 7, 31))


def test_immature_labels_are_refused(transactions):
    with pytest.raises(datasets.LeakageError, match="labels are only known"):
        datasets.assert_labels_matured(transactions, as_of=date(2025, 4, 20), label_delay=7)
    ok = transactions[transactions["tx_datetime"] < pd.Timestamp("2025-04-14")]
    datasets.assert_labels_matured(ok, as_of=date(2025, 4, 20), label_delay=7)


def test_real_features_pass_the_point_in_time_guard(transactions):
    datasets.check_point_in_time(
        build_features, transactions, pd.Timestamp("2025-04-15 12:00"), label_delay=7
    )


def test_a_feature_built_from_the_future_is_caught(transactions):
    def leaky(tx: pd.DataFrame, label_delay_days: int = 7) -> pd.DataFrame:
        out = build_features(tx, label_delay_days=label_delay_days)
        # the customer's number of transactions over the whole data set (looks ahead)
        out["customer_total_tx"] = (
            tx.groupby("customer_id")["transaction_id"].transform("size").to_numpy()
        )
        return out

    with pytest.raises(datasets.LeakageError, match="future transactions: customer_total_tx"):
        datasets.check_point_in_time(leaky, transactions, pd.Timestamp("2025-04-15 12:00"), 7)


def test_a_feature_using_immature_labels_is_caught(transactions):
    def undelayed(tx: pd.DataFrame, label_delay_days: int = 7) -> pd.DataFrame:
        out = build_features(tx, label_delay_days=label_delay_days)
        # terminal fraud count of the previous day: labels are not known yet
        day = tx["tx_datetime"].dt.normalize()
        daily = tx.groupby([tx["terminal_id"], day])["tx_fraud"].sum()
        prev = pd.MultiIndex.from_arrays([tx["terminal_id"], day - pd.Timedelta(days=1)])
        out["terminal_frauds_yesterday"] = daily.reindex(prev).fillna(0).to_numpy()
        return out

    with pytest.raises(datasets.LeakageError, match="labels not yet matured"):
        datasets.check_point_in_time(undelayed, transactions, pd.Timestamp("2025-04-15 12:00"), 7)


def test_join_labels_and_digest(transactions):
    feats = build_features(transactions)
    joined = datasets.join_labels(feats, transactions)
    assert len(joined) == len(transactions)
    assert {"tx_fraud", "customer_id", "tx_amount"} <= set(joined.columns)
    d1 = datasets.dataset_digest(joined)
    changed = joined.copy()
    changed.loc[0, "tx_fraud"] = 1 - changed.loc[0, "tx_fraud"]
    assert datasets.dataset_digest(changed) != d1 == datasets.dataset_digest(joined.copy())
    with pytest.raises(ValueError, match="transactions.tx_fraud"):
        datasets.join_labels(feats, transactions.drop(columns=["tx_fraud"]))
    assert np.isfinite(joined.select_dtypes("number").to_numpy(dtype=float)).all()
