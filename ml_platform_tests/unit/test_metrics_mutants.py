"""Metric input checks and the undefined cases: NaN, never a crash or a silent zero."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml_platform.training import metrics


def test_label_checks_name_the_problem() -> None:
    with pytest.raises(ValueError) as err:
        metrics.roc_auc(np.zeros((2, 2)), np.zeros(4))
    assert str(err.value) == "y_true: expected a 1-D array, got shape (2, 2)"
    with pytest.raises(ValueError) as err:
        metrics.average_precision(np.array([0, 2]), np.array([0.1, 0.2]))
    assert str(err.value) == "y_true: labels must be 0/1"


def test_undefined_metrics_are_nan() -> None:
    assert math.isnan(metrics.roc_auc(np.array([1, 1]), np.array([0.1, 0.9])))
    assert math.isnan(metrics.average_precision(np.array([0, 0]), np.array([0.1, 0.9])))
    assert math.isnan(metrics.average_precision(np.array([], dtype=int), np.array([])))


def test_auc_and_ap_on_a_hand_checked_ranking() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.5, 0.8])
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)
    assert metrics.average_precision(y, s) == pytest.approx((1.0 + 2 / 3) / 2)


@pytest.mark.parametrize("k", [0, -3])
def test_k_must_be_positive(k: int) -> None:
    df = pd.DataFrame({"customer_id": [1], "tx_fraud": [0], "day": ["d"]})
    for fn in (metrics.card_precision_at_k, metrics.protocol_card_precision_at_k):
        with pytest.raises(ValueError) as err:
            fn(df, np.array([0.5]), k=k, day_col="day")
        assert str(err.value) == f"k: must be positive, got {k}"
