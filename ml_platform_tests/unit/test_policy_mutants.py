"""Retraining policy edges: exact reasons the sensor logs, rule boundaries, config limits."""

from __future__ import annotations

import json
from datetime import date
from types import SimpleNamespace

import pytest

from ml_platform.monitoring.policy import Decision, PolicyConfig, decide
from ml_platform_tests.unit.test_policy import CFG, DAY
from ml_platform_tests.unit.test_policy import state as _state  # the same quiet-day state


def test_each_rule_reports_its_exact_reason():
    cases = [
        (
            _state(retraining_in_progress=True),
            Decision(False, "in_progress", "2025-05-10: a retraining run is already in progress"),
        ),
        (
            _state(last_retrain_day=date(2025, 5, 9)),
            Decision(
                False,
                "cooldown",
                "2025-05-10: last retraining triggered 1 day(s) ago "
                "(< min_days_between_retrains=3)",
            ),
        ),
        (
            _state(has_champion=False, new_labeled_days=2),
            Decision(
                True, "no_champion", "2025-05-10: no champion yet and 2 labeled day(s) available"
            ),
        ),
        (
            _state(has_champion=False, new_labeled_days=0),
            Decision(False, "no_champion", "2025-05-10: no champion yet and no labeled day"),
        ),
        (
            _state(drift_share=0.4567),
            Decision(True, "drift", "2025-05-10: drifted feature share 0.457 > threshold 0.300"),
        ),
        (
            _state(recent_metric=0.6, reference_metric=0.72),
            Decision(
                True,
                "performance",
                "2025-05-10: labeled AP 0.600 is 0.120 below the champion's reference 0.720 "
                "(margin 0.050)",
            ),
        ),
        (
            _state(new_labeled_days=15),
            Decision(
                True,
                "new_labels",
                "2025-05-10: 15 newly labeled day(s) since the champion's training data (>= 14)",
            ),
        ),
        (
            _state(),
            Decision(
                False,
                "none",
                "2025-05-10: no rule fired (drift share 0.100 <= 0.300; labeled AP 0.700 vs "
                "reference 0.720 (margin 0.050); 3 new labeled day(s) < 14)",
            ),
        ),
        (
            _state(drift_share=None, recent_metric=None, reference_metric=None),
            Decision(
                False,
                "none",
                "2025-05-10: no rule fired (drift share n/a <= 0.300; labeled AP n/a vs "
                "reference n/a (margin 0.050); 3 new labeled day(s) < 14)",
            ),
        ),
    ]
    for state, expected in cases:
        assert decide(state, CFG) == expected


def test_cooldown_ends_exactly_after_min_days():
    cfg = PolicyConfig(min_days_between_retrains=3)
    at_limit = decide(_state(drift_share=0.9, last_retrain_day=date(2025, 5, 7)), cfg)
    assert at_limit.trigger == "drift"
    inside = decide(_state(drift_share=0.9, last_retrain_day=date(2025, 5, 8)), cfg)
    assert inside.trigger == "cooldown" and "2 day(s) ago" in inside.reason
    # no cooldown configured: a retraining on the same day does not block
    same_day = decide(
        _state(drift_share=0.9, last_retrain_day=DAY), PolicyConfig(min_days_between_retrains=0)
    )
    assert same_day.trigger == "drift"


def test_first_model_needs_one_labeled_day_and_ignores_other_signals():
    one = decide(_state(has_champion=False, new_labeled_days=1, drift_share=0.0), CFG)
    assert (one.retrain, one.trigger) == (True, "no_champion")
    none = decide(_state(has_champion=False, new_labeled_days=0, drift_share=0.9), CFG)
    assert (none.retrain, none.trigger) == (False, "no_champion")


def test_a_drop_equal_to_the_margin_does_not_trigger():
    cfg = PolicyConfig(performance_margin=0.25)
    assert decide(_state(recent_metric=0.5, reference_metric=0.75), cfg).trigger == "none"
    assert decide(_state(recent_metric=0.4375, reference_metric=0.75), cfg).trigger == "performance"


def test_a_missing_ap_side_never_triggers_performance():
    only_recent = decide(_state(recent_metric=0.1, reference_metric=None), CFG)
    only_reference = decide(_state(recent_metric=None, reference_metric=0.9), CFG)
    assert only_recent.trigger == only_reference.trigger == "none"
    assert "labeled AP 0.100 vs reference n/a" in only_recent.reason
    assert "labeled AP n/a vs reference 0.900" in only_reference.reason


def test_drift_wins_over_performance_and_new_labels():
    d = decide(_state(drift_share=0.5, recent_metric=0.1, new_labeled_days=30), CFG)
    assert d.trigger == "drift"
    p = decide(_state(recent_metric=0.1, new_labeled_days=30), CFG)
    assert p.trigger == "performance"


def test_decision_serialises_every_field():
    d = Decision(True, "drift", "why")
    assert json.loads(d.to_json()) == {"retrain": True, "trigger": "drift", "reason": "why"}


def test_from_settings_maps_each_threshold():
    settings = SimpleNamespace(
        drift_share_threshold=0.25,
        retrain_performance_margin=0.07,
        retrain_min_new_labeled_days=9,
        retrain_min_days_between=2,
    )
    assert PolicyConfig.from_settings(settings) == PolicyConfig(0.25, 0.07, 9, 2)


def test_config_accepts_its_inclusive_limits():
    PolicyConfig(drift_share_threshold=0.0, performance_margin=0.0)
    PolicyConfig(drift_share_threshold=1.0, min_new_labeled_days=1, min_days_between_retrains=0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("drift_share_threshold", -0.01, "drift_share_threshold: must be within [0, 1], got -0.01"),
        ("drift_share_threshold", 1.01, "drift_share_threshold: must be within [0, 1], got 1.01"),
        ("performance_margin", -0.5, "performance_margin: must be >= 0, got -0.5"),
        ("min_new_labeled_days", 0, "min_new_labeled_days: must be >= 1, got 0"),
        ("min_days_between_retrains", -1, "min_days_between_retrains: must be >= 0, got -1"),
    ],
)
def test_bad_config_message_names_field_and_value(field, value, message):
    with pytest.raises(ValueError) as err:
        PolicyConfig(**{field: value})
    assert str(err.value) == message
