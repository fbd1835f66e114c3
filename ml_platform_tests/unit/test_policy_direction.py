"""The performance rule in the primary metric's direction: worse means lower for AP, higher
for MAE; properties over all values, and the reasons the sensor logs for each direction."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.monitoring.policy import MonitoringState, PolicyConfig, decide
from ml_platform.training.metrics import metric

DAY = date(2013, 6, 10)
MAE = metric("mean_absolute_error")
AP = metric("average_precision")
#: every other rule quiet: no drift, few new labels, no cooldown
QUIET = dict(as_of=DAY, drift_share=0.0, new_labeled_days=0)
values = st.floats(min_value=0.0, max_value=1_000.0, allow_nan=False)
margins = st.floats(min_value=0.0, max_value=50.0, allow_nan=False)


def _decide(recent: float, reference: float, margin: float, m=MAE):
    state = MonitoringState(**QUIET, recent_metric=recent, reference_metric=reference)
    return decide(state, PolicyConfig(performance_margin=margin, metric=m))


@settings(max_examples=300, deadline=None)
@given(reference=values, worse_by=st.floats(min_value=0.0, max_value=500.0), margin=margins)
def test_lower_is_better_a_higher_recent_value_beyond_the_margin_triggers(
    reference, worse_by, margin
):
    recent = reference + worse_by
    d = _decide(recent, reference, margin)
    # exactly what the rule promises: triggered iff recent exceeds the reference by > margin
    assert d.retrain == (recent - reference > margin)
    assert d.trigger == ("performance" if d.retrain else "none")


@settings(max_examples=300, deadline=None)
@given(recent=values, reference=values, margin=margins)
def test_lower_is_better_an_equal_or_better_recent_value_never_triggers(recent, reference, margin):
    if recent > reference:
        recent, reference = reference, recent  # recent <= reference: as good or better
    assert not _decide(recent, reference, margin).retrain


@settings(max_examples=300, deadline=None)
@given(recent=values, reference=values, margin=margins)
def test_the_two_directions_mirror_each_other(recent, reference, margin):
    """A value that is worse for MAE (higher) is better for AP and the other way round: the
    MAE decision on (recent, reference) is the AP decision on (reference, recent)."""
    assert (
        _decide(recent, reference, margin).retrain == _decide(reference, recent, margin, AP).retrain
    )


def test_the_reason_names_the_metric_and_the_side():
    worse = _decide(16.0, 12.5, 1.0)
    assert (worse.retrain, worse.trigger) == (True, "performance")
    assert worse.reason == (
        "2013-06-10: labeled MAE 16.000 is 3.500 above the champion's reference 12.500 "
        "(margin 1.000)"
    )
    better = _decide(9.0, 12.5, 1.0)
    assert better.reason == (
        "2013-06-10: no rule fired (drift share 0.000 <= 0.300; labeled MAE 9.000 vs "
        "reference 12.500 (margin 1.000); 0 new labeled day(s) < 14)"
    )


def test_from_settings_takes_the_use_cases_metric():
    from ml_platform.use_cases import get_use_case, resolve_settings

    flights = resolve_settings(get_use_case("flights"))
    cfg = PolicyConfig.from_settings(flights, MAE)
    assert cfg.metric is MAE and cfg.performance_margin == flights.retrain_performance_margin
    assert PolicyConfig.from_settings(flights).metric is AP  # the default stays the flagship's
