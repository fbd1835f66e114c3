"""Labeled performance per day / model version / source on a hand-checkable example."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_platform.monitoring.performance import (
    daily_performance,
    pooled_average_precision,
    trailing_average_precision,
)

D1, D2 = date(2025, 5, 1), date(2025, 5, 2)


def outcomes() -> pd.DataFrame:
    # Day 1, version 1, batch: scores 0.9 (fraud), 0.8 (legit), 0.7 (fraud), 0.1 (legit);
    # threshold 0.75 flags 0.9 and 0.8 -> caught 1 of 2 frauds, 1 of 2 flagged correct.
    # AUC: fraud-vs-legit pairs (0.9>0.8, 0.9>0.1, 0.7<0.8, 0.7>0.1) -> 3/4 = 0.75.
    # AP: frauds at ranks 1 and 3 -> (1/1 + 2/3) / 2 = 0.8333.
    # Cards: customers 1..4, one tx each; CP@100 = 2 frauds / 100 = 0.02.
    d1 = pd.DataFrame(
        {
            "transaction_id": [1, 2, 3, 4],
            "tx_date": D1,
            "customer_id": [1, 2, 3, 4],
            "model_version": "1",
            "source": "batch",
            "score": [0.9, 0.8, 0.7, 0.1],
            "is_fraud": [True, True, False, False],
            "tx_fraud": [1, 0, 1, 0],
        }
    )
    # Day 2, version 1, online: perfect ranking, single fraud caught.
    d2 = pd.DataFrame(
        {
            "transaction_id": [5, 6, 7],
            "tx_date": D2,
            "customer_id": [1, 1, 2],
            "model_version": "1",
            "source": "online",
            "score": [0.95, 0.2, 0.1],
            "is_fraud": [True, False, False],
            "tx_fraud": [1, 0, 0],
        }
    )
    # Day 2, version 2, batch: no fraud at all -> AUC/AP undefined (NaN), catch rate NaN.
    d3 = pd.DataFrame(
        {
            "transaction_id": [8, 9],
            "tx_date": D2,
            "customer_id": [3, 4],
            "model_version": "2",
            "source": "batch",
            "score": [0.3, 0.6],
            "is_fraud": [False, False],
            "tx_fraud": [0, 0],
        }
    )
    return pd.concat([d1, d2, d3], ignore_index=True)


def test_metrics_match_the_hand_computation():
    perf = daily_performance(outcomes()).set_index(["tx_date", "model_version", "source"])
    r = perf.loc[(D1, "1", "batch")]
    assert (r.n_transactions, r.n_fraud, r.n_flagged, r.n_caught) == (4, 2, 2, 1)
    assert r.roc_auc == pytest.approx(0.75)
    assert r.average_precision == pytest.approx((1 + 2 / 3) / 2)
    assert r.card_precision_at_100 == pytest.approx(0.02)
    assert r.fraud_catch_rate == pytest.approx(0.5)
    assert r.flagged_precision == pytest.approx(0.5)

    o = perf.loc[(D2, "1", "online")]
    assert (o.roc_auc, o.average_precision, o.fraud_catch_rate) == (1.0, 1.0, 1.0)
    # customer 1 has two tx (max score 0.95, label 1) -> one card, one hit
    assert o.card_precision_at_100 == pytest.approx(0.01)

    empty = perf.loc[(D2, "2", "batch")]
    assert np.isnan(empty.roc_auc) and np.isnan(empty.average_precision)
    assert np.isnan(empty.fraud_catch_rate) and np.isnan(empty.flagged_precision)
    assert empty.n_flagged == 0


def test_pooled_and_trailing_average_precision():
    frame = outcomes()
    # pooled over day 1 only (version 1 batch) equals that day's AP
    assert pooled_average_precision(frame, "1", [D1]) == pytest.approx((1 + 2 / 3) / 2)
    assert pooled_average_precision(frame, "2", [D2]) is None  # no fraud: undefined
    trailing = trailing_average_precision(frame, window_days=2)
    row = trailing[(trailing.model_version == "1") & (trailing.source == "batch")].iloc[0]
    assert row.trailing_average_precision == pytest.approx((1 + 2 / 3) / 2)
    assert row.trailing_days == 1


def test_bad_input_names_the_column():
    with pytest.raises(ValueError, match="tx_fraud"):
        daily_performance(outcomes().drop(columns="tx_fraud"))
    bad = outcomes()
    bad.loc[0, "tx_fraud"] = 2
    with pytest.raises(ValueError, match="tx_fraud"):
        daily_performance(bad)
