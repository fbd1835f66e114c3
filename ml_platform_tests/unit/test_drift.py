"""Drift: detected on injected drift, not on data from the same distribution (Evidently 0.7)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml_platform.monitoring.drift import compute_drift, is_drifted

COLUMNS = ["amount", "count_7d", "night", "risk"]


def frame(n: int, seed: int, inflate: float = 1.0, night_share: float = 0.15) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 30.0, n) * inflate,
            "count_7d": rng.poisson(6, n),
            "night": (rng.random(n) < night_share).astype(int),
            "risk": rng.beta(1, 30, n),
            "score": rng.beta(1, 40, n) * inflate,
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(20_000, seed=0)


def test_same_distribution_shows_no_drift(reference, tmp_path):
    result = compute_drift(reference, frame(5_000, seed=1), COLUMNS, html_path=tmp_path / "r.html")
    assert result.drift_share == 0.0 and result.drifted_features == []
    assert result.prediction is not None and not result.prediction.drifted
    # large samples: Evidently picks the normed Wasserstein distance (drift when >= 0.1)
    assert {c.method for c in result.features if c.column != "night"} == {
        "Wasserstein distance (normed)"
    }
    assert (tmp_path / "r.html").stat().st_size > 10_000  # the HTML report is saved
    assert result.summary()["html_path"] == str(tmp_path / "r.html")


def test_injected_drift_is_detected(reference):
    drifted = frame(5_000, seed=2, inflate=1.6, night_share=0.45)
    result = compute_drift(reference, drifted, COLUMNS, full_report=True)
    assert result.drifted_features == ["amount", "night"]
    assert result.drift_share == pytest.approx(0.5)
    assert result.prediction.drifted and result.prediction.score >= result.prediction.threshold
    # our count (features + prediction) agrees with Evidently's own DriftedColumnsCount
    assert result.evidently_drifted_count == len(result.drifted_features) + 1


def test_small_samples_use_p_values_in_the_right_direction(reference):
    small_ref = reference.head(600)
    same = compute_drift(small_ref, frame(400, seed=5), COLUMNS)
    shifted = compute_drift(small_ref, frame(400, seed=6, inflate=1.6), COLUMNS)
    amount_same = next(c for c in same.features if c.column == "amount")
    amount_shift = next(c for c in shifted.features if c.column == "amount")
    assert amount_same.method == amount_shift.method == "K-S p_value"
    assert not amount_same.drifted and amount_same.score > amount_same.threshold
    assert amount_shift.drifted and amount_shift.score < amount_shift.threshold


def test_direction_helper():
    assert is_drifted("K-S p_value", 0.01, 0.05) and not is_drifted("K-S p_value", 0.5, 0.05)
    assert is_drifted("Wasserstein distance (normed)", 0.1, 0.1)
    assert not is_drifted("Jensen-Shannon distance", 0.05, 0.1)
    assert not is_drifted("K-S p_value", float("nan"), 0.05)


def test_bad_input_names_frame_and_column(reference):
    with pytest.raises(ValueError, match="current.risk"):
        compute_drift(reference, frame(100, seed=3).drop(columns="risk"), COLUMNS)
    bad = frame(100, seed=3)
    bad.loc[0, "amount"] = np.inf
    with pytest.raises(ValueError, match="current.amount"):
        compute_drift(reference, bad, COLUMNS)


def test_fast_path_equals_the_report(reference):
    """Without HTML the same Evidently stat tests run unrendered: identical results."""
    current = frame(3_000, seed=7, inflate=1.3, night_share=0.3)
    full = compute_drift(reference, current, COLUMNS, full_report=True)
    fast = compute_drift(reference, current, COLUMNS, full_report=False)
    for a, b in zip(
        full.features + [full.prediction], fast.features + [fast.prediction], strict=True
    ):
        assert (a.column, a.method, a.threshold, a.drifted) == (
            b.column,
            b.method,
            b.threshold,
            b.drifted,
        )
        assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-12)
    assert fast.drifted_features == full.drifted_features != []
