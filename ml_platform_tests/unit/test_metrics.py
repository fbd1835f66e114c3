"""Fraud metrics on hand-computed examples, including the exact Quality protocol."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_platform.training import metrics


def _tx(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    """rows of (day, customer, fraud)."""
    return pd.DataFrame(
        {
            "tx_datetime": pd.to_datetime([r[0] for r in rows]) + pd.Timedelta(hours=12),
            "customer_id": [r[1] for r in rows],
            "tx_fraud": np.array([r[2] for r in rows], dtype=np.int8),
        }
    )


def test_card_precision_groups_by_card_and_averages_days():
    df = _tx(
        [
            ("2025-01-01", 1, 1),
            ("2025-01-01", 1, 0),
            ("2025-01-01", 2, 0),
            ("2025-01-01", 3, 1),
            ("2025-01-02", 1, 0),
            ("2025-01-02", 2, 0),
        ]
    )
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.6])
    # day 1 cards by max score: 1 (0.9, fraud), 2 (0.8, legit), 3 (0.2, fraud): top-2 -> 1/2
    # day 2: top-2 -> 0/2 ; mean 0.25
    assert metrics.card_precision_at_k(df, score, k=2) == pytest.approx(0.25)


def test_protocol_card_precision_drops_cards_detected_earlier():
    df = _tx(
        [
            ("2025-01-01", 1, 1),
            ("2025-01-01", 2, 0),
            ("2025-01-02", 1, 1),
            ("2025-01-02", 2, 0),
            ("2025-01-02", 3, 1),
        ]
    )
    score = np.array([0.9, 0.1, 0.9, 0.5, 0.4])
    mean, per_day = metrics.protocol_card_precision_at_k(df, score, k=1)
    # day 1: card 1 detected (1/1); day 2: card 1 dropped, top-1 is card 2 (legit) -> 0
    assert per_day == [1.0, 0.0]
    assert mean == 0.5
    # the simple version would count card 1 again on day 2
    assert metrics.card_precision_at_k(df, score, k=1) == 1.0
    alerts = metrics.protocol_alerts(df, score, k=1)
    assert alerts[["customer_id", "tx_fraud"]].values.tolist() == [[1, 1], [2, 0]]
    assert alerts["score"].tolist() == [0.9, 0.5]


def test_protocol_mask_drops_customers_known_compromised_before_t_minus_delay():
    history = _tx(
        [
            ("2025-01-01", 7, 1),  # before the first training day: ignored
            ("2025-01-03", 1, 1),  # known from test day 01-03 + 7 + 1 = 01-11 on
            ("2025-01-05", 2, 0),
            ("2025-01-10", 3, 1),  # known only from 01-18
        ]
    )
    test = _tx(
        [
            ("2025-01-10", 1, 1),
            ("2025-01-11", 1, 1),
            ("2025-01-11", 3, 1),
            ("2025-01-12", 7, 0),
            ("2025-01-18", 3, 0),
        ]
    )
    keep = metrics.protocol_test_mask(
        test, history, first_train_day=date(2025, 1, 2), label_delay=7
    )
    assert keep.tolist() == [True, False, True, True, False]


def test_protocol_metrics_scores_only_kept_rows():
    history = _tx([("2025-01-01", 1, 1)])
    test = _tx([("2025-01-10", 1, 1), ("2025-01-10", 2, 1), ("2025-01-10", 3, 0)])
    out = metrics.protocol_metrics(
        test, np.array([0.0, 0.9, 0.1]), history, first_train_day=date(2025, 1, 1), label_delay=7
    )
    assert out["n_scored_after_protocol"] == 2
    assert out["roc_auc"] == 1.0 and out["average_precision"] == 1.0
    assert out["card_precision_at_100"] == pytest.approx(0.01)


def test_auc_and_ap_reject_bad_labels_and_handle_one_class():
    with pytest.raises(ValueError, match="y_true"):
        metrics.roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))
    assert np.isnan(metrics.roc_auc(np.array([0, 0]), np.array([0.1, 0.2])))
    assert metrics.average_precision(np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9])) == 1.0


def test_score_length_must_match():
    with pytest.raises(ValueError, match="score"):
        metrics.card_precision_at_k(_tx([("2025-01-01", 1, 1)]), np.array([0.1, 0.2]))


def test_flag_metrics_judge_the_flag_against_the_labels_own() -> None:
    from ml_platform.training.metrics import flag_metrics

    y = np.array([0.0, 20.0, 30.0, 16.0, 15.0])
    pred = np.array([18.0, 25.0, 10.0, 15.0, 40.0])  # flags rows 0, 1, 4; late: 1, 2, 3
    got = flag_metrics(y, pred, 15.0, "late")
    assert got == {"late_precision": 1 / 3, "late_recall": 1 / 3, "late_share": 3 / 5}
    nothing = flag_metrics(y, np.zeros(5), 15.0, "late")
    assert np.isnan(nothing["late_precision"]) and nothing["late_share"] == 0.0
    with pytest.raises(ValueError, match="prediction: 2 values for 5 labels"):
        flag_metrics(y, pred[:2], 15.0, "late")


def test_value_protocol_metrics_are_the_regression_task_s_own() -> None:
    from ml_platform.training.metrics import value_protocol_metrics
    from ml_platform.use_cases import get_use_case

    flights = get_use_case("flights")
    y = np.array([0.0, 20.0, 30.0, 16.0])
    pred = np.array([2.0, 16.0, 10.0, 20.0])
    got = value_protocol_metrics(y, pred, use_case=flights)
    assert list(got)[:3] == ["mean_absolute_error", "root_mean_squared_error", "r2"]
    assert got["mean_absolute_error"] == pytest.approx((2 + 4 + 20 + 4) / 4)
    assert got["root_mean_squared_error"] == pytest.approx(np.sqrt((4 + 16 + 400 + 16) / 4))
    assert (got["late_precision"], got["late_recall"]) == (1.0, 2 / 3)
    assert got["n_rows"] == 4.0
    with pytest.raises(ValueError, match="task is binary, not regression"):
        value_protocol_metrics(y, pred, use_case=get_use_case("fraud"))
