"""The retraining policy (shared by the sensor and the backtest): each rule and its reason."""

from __future__ import annotations

import dataclasses
import math
from datetime import date

import pytest

from ml_platform.monitoring.policy import MonitoringState, PolicyConfig, decide

CFG = PolicyConfig(
    drift_share_threshold=0.3,
    performance_margin=0.05,
    min_new_labeled_days=14,
    min_days_between_retrains=3,
)
DAY = date(2025, 5, 10)


def state(**kw) -> MonitoringState:
    base = dict(
        as_of=DAY, drift_share=0.1, recent_metric=0.70, reference_metric=0.72, new_labeled_days=3
    )
    return MonitoringState(**(base | kw))


def test_quiet_day_skips_with_the_numbers_compared():
    d = decide(state(), CFG)
    assert (d.retrain, d.trigger) == (False, "none")
    assert "drift share 0.100 <= 0.300" in d.reason
    assert "labeled AP 0.700 vs reference 0.720" in d.reason
    assert "3 new labeled day(s) < 14" in d.reason


@pytest.mark.parametrize(
    ("overrides", "trigger"),
    [
        ({"drift_share": 0.31}, "drift"),
        ({"recent_metric": 0.60}, "performance"),
        ({"new_labeled_days": 14}, "new_labels"),
        ({"has_champion": False, "new_labeled_days": 5}, "no_champion"),
    ],
)
def test_each_rule_triggers_a_retraining(overrides, trigger):
    d = decide(state(**overrides), CFG)
    assert d.retrain and d.trigger == trigger
    assert DAY.isoformat() in d.reason


def test_boundaries_are_strict_where_documented():
    assert not decide(state(drift_share=0.3), CFG).retrain  # share must EXCEED the threshold
    assert decide(state(drift_share=math.nextafter(0.3, 1.0)), CFG).trigger == "drift"
    assert not decide(state(new_labeled_days=13), CFG).retrain
    assert decide(state(new_labeled_days=14), CFG).trigger == "new_labels"


def test_performance_boundary_is_strict_on_both_sides():
    """A drop of exactly the margin does not trigger; the next float below does.

    Binary fractions (0.75 - 0.5 == 0.25 exactly) so the boundary is really hit: with
    0.72 - 0.67 the float drop is 0.04999..., below the margin whatever the comparison.
    """
    cfg = dataclasses.replace(CFG, performance_margin=0.25)
    exact = state(reference_metric=0.75, recent_metric=0.5)
    assert exact.reference_metric - exact.recent_metric == cfg.performance_margin
    assert not decide(exact, cfg).retrain  # drop == margin is not > margin
    below = decide(state(reference_metric=0.75, recent_metric=math.nextafter(0.5, 0.0)), cfg)
    assert (below.retrain, below.trigger) == (True, "performance")


def test_in_progress_run_blocks_everything():
    d = decide(state(drift_share=0.9, retraining_in_progress=True), CFG)
    assert (d.retrain, d.trigger) == (False, "in_progress")
    assert "already in progress" in d.reason


def test_cooldown_after_a_recent_trigger():
    recent = decide(state(drift_share=0.9, last_retrain_day=date(2025, 5, 8)), CFG)
    assert (recent.retrain, recent.trigger) == (False, "cooldown")
    later = decide(state(drift_share=0.9, last_retrain_day=date(2025, 5, 7)), CFG)
    assert later.retrain and later.trigger == "drift"


def test_unmeasured_signals_never_trigger():
    d = decide(state(drift_share=None, recent_metric=None, reference_metric=None), CFG)
    assert not d.retrain
    assert "n/a" in d.reason


def test_no_champion_and_no_labels_skips():
    d = decide(state(has_champion=False, new_labeled_days=0), CFG)
    assert (d.retrain, d.trigger) == (False, "no_champion")


@pytest.mark.parametrize(
    ("field", "value"),
    [("drift_share_threshold", 1.5), ("performance_margin", -0.1), ("min_new_labeled_days", 0)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        PolicyConfig(**{field: value})
