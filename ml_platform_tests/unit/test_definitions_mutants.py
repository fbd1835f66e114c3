"""Definition checks and the label delay: each bad definition is refused with its reason."""

from __future__ import annotations

import dataclasses

import pytest

from ml_platform.features import FEATURE_VERSION
from ml_platform.features import definitions as defs


def test_shipped_definitions_pass_the_check_and_hash_to_the_recorded_version() -> None:
    defs._check()  # the 1-day windows sit exactly on the window_days >= 1 limit
    assert defs._version() == FEATURE_VERSION


def _with(monkeypatch: pytest.MonkeyPatch, extra: defs.FeatureDef) -> None:
    monkeypatch.setattr(defs, "FEATURES", (*defs.FEATURES, extra))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            defs.FeatureDef("tx_amount", "value"),
            "feature 'tx_amount': defined twice",
        ),
        (
            defs.FeatureDef("c0", "count", "customer_id", 0),
            "feature 'c0': window_days must be >= 1",
        ),
        (
            defs.FeatureDef("cn", "count", "customer_id", None),
            "feature 'cn': window_days must be >= 1",
        ),
        (
            defs.FeatureDef("fc", "fraud_count", "terminal_id", 7, delayed=False),
            "feature 'fc': fraud_count reads labels, so it needs a label delay (delayed=True)",
        ),
    ],
)
def test_bad_definition_is_refused_with_its_reason(monkeypatch, extra, message) -> None:
    _with(monkeypatch, extra)
    with pytest.raises(ValueError) as err:
        defs._check()
    assert str(err.value) == message


def test_entity_free_and_unlabelled_definitions_are_accepted(monkeypatch) -> None:
    # no entity: no window needed; a non-label aggregate needs no delay
    _with(monkeypatch, defs.FeatureDef("flag", "night"))
    defs._check()
    monkeypatch.setattr(defs, "FEATURES", defs.FEATURES[:-1])
    _with(monkeypatch, defs.FeatureDef("c1", "mean_amount", "customer_id", 1, delayed=False))
    defs._check()


def test_label_delay_accepts_positive_integers_only() -> None:
    assert defs.check_label_delay(1) == 1
    three = defs.check_label_delay(3.0)
    assert three == 3 and type(three) is int
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError) as err:
            defs.check_label_delay(bad)
        assert str(err.value) == f"label_delay_days: must be an integer >= 1, got {bad!r}"


def test_horizon_adds_the_delay_only_to_delayed_windows(monkeypatch) -> None:
    undelayed = defs.FeatureDef("c90", "count", "customer_id", 90)
    _with(monkeypatch, undelayed)
    assert defs.horizon_days(7) == 90  # 90 (no delay) beats 60 + 7
    assert defs.horizon_days(40) == 100  # 60 + 40 beats 90
    monkeypatch.setattr(
        defs, "FEATURES", (*defs.FEATURES[:-1], dataclasses.replace(undelayed, delayed=True))
    )
    assert defs.horizon_days(7) == 97


def test_helpers_build_customer_and_terminal_definitions() -> None:
    assert defs._customer("count", 7, "n7", "doc") == defs.FeatureDef(
        "n7", "count", "customer_id", 7, False, "doc"
    )
    assert defs._customer("risk", 30, "r30", "doc", delayed=True).delayed is True
    # terminal features always read through the label delay
    assert defs._terminal("risk", 30, "t30", "doc") == defs.FeatureDef(
        "t30", "risk", "terminal_id", 30, True, "doc"
    )
