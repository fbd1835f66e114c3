"""The promotion gate's rule: the ROC AUC floor, the first model vs its baseline, the margin.

``run_gate`` on a real MLflow registry is tested in ``test_registry.py`` (it shares the
trained split there); these are the pure ``decide`` boundaries.
"""

from __future__ import annotations

import math

import pytest

from ml_platform.training.gate import decide

FLOOR = 0.75  # a binary fraction: the boundary value is exact
MARGIN = 0.25


def m(auc: float, ap: float) -> dict[str, float]:
    return {"roc_auc": auc, "average_precision": ap}


BELOW_FLOOR = math.nextafter(FLOOR, 0.0)


@pytest.mark.parametrize(
    ("champion", "baseline_ap"),
    [
        (None, None),  # first model, no baseline recorded
        (None, 0.0),  # first model far above its baseline
        (m(0.99, 0.0), None),  # beats the champion by far more than the margin
    ],
)
def test_nothing_below_the_auc_floor_is_promoted(champion, baseline_ap) -> None:
    promote, reason = decide(
        m(BELOW_FLOOR, 1.0), champion, margin_ap=MARGIN, min_auc=FLOOR, baseline_ap=baseline_ap
    )
    assert not promote
    assert "below the floor 0.75" in reason
    # the floor itself is allowed: the same challenger at exactly the floor goes on
    at_floor, _ = decide(
        m(FLOOR, 1.0), champion, margin_ap=MARGIN, min_auc=FLOOR, baseline_ap=baseline_ap
    )
    assert at_floor


@pytest.mark.parametrize("auc", [math.nan, math.inf, -math.inf])
def test_unmeasurable_auc_is_never_promoted(auc: float) -> None:
    promote, reason = decide(m(auc, 1.0), None, margin_ap=MARGIN, min_auc=0.0)
    assert not promote and "below the floor" in reason


def test_first_model_is_promoted_only_if_at_least_its_baseline() -> None:
    equal, reason = decide(m(0.9, 0.5), None, margin_ap=MARGIN, min_auc=FLOOR, baseline_ap=0.5)
    assert equal and "first model" in reason and "baseline AP 0.5000" in reason
    worse, reason = decide(m(0.9, 0.4), None, margin_ap=MARGIN, min_auc=FLOOR, baseline_ap=0.5)
    assert not worse and "does not beat the baseline's 0.5000" in reason
    # the baseline tag keeps 6 decimals: a rounding-level shortfall still counts as equal
    rounded, _ = decide(m(0.9, 0.5 - 4e-7), None, margin_ap=MARGIN, min_auc=FLOOR, baseline_ap=0.5)
    just_under, _ = decide(
        m(0.9, 0.5 - 2e-6), None, margin_ap=MARGIN, min_auc=FLOOR, baseline_ap=0.5
    )
    assert rounded and not just_under
    no_baseline, reason = decide(m(0.9, 0.01), None, margin_ap=MARGIN, min_auc=FLOOR)
    assert no_baseline and "no baseline" in reason


def test_challenger_must_beat_the_champion_by_more_than_the_margin() -> None:
    champion = m(0.9, 0.5)
    exact, reason = decide(m(0.9, 0.75), champion, margin_ap=MARGIN, min_auc=FLOOR)
    assert MARGIN == 0.75 - 0.5 and not exact and "<= margin 0.25" in reason
    above, reason = decide(
        m(0.9, math.nextafter(0.75, 1.0)), champion, margin_ap=MARGIN, min_auc=FLOOR
    )
    assert above and "beats champion" in reason
    # a challenger with a worse AUC but the AP gain still goes: AP decides above the floor
    lower_auc, _ = decide(m(FLOOR, 0.9), m(0.99, 0.5), margin_ap=MARGIN, min_auc=FLOOR)
    assert lower_auc
