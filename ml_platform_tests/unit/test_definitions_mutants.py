"""Definition checks and the label delay: each bad definition is refused with its reason."""

from __future__ import annotations

import dataclasses

import pytest

from ml_platform.features import FEATURE_VERSION
from ml_platform.features import definitions as defs

DAY = defs.DAY_NS
#: The fraud definitions' hash: models in the registry were trained under it, so a change
#: of the hashing (not of a definition) would orphan every one of them.
FRAUD_FEATURE_VERSION = "8195218e6e8e2444"


def test_shipped_definitions_pass_the_check_and_hash_to_the_recorded_version() -> None:
    fs = defs.feature_set()
    defs._check(fs.features)  # the 1-day windows sit exactly on the window >= 1 ns limit
    assert fs.version == FEATURE_VERSION == FRAUD_FEATURE_VERSION
    lazy = (defs.FEATURES, defs.FEATURE_COLUMNS, defs.REQUIRED_COLUMNS)
    assert lazy == (fs.features, fs.columns, fs.columns[:15])
    with pytest.raises(AttributeError, match="has no attribute 'NOPE'"):
        defs.NOPE  # noqa: B018


def test_the_feature_hash_is_pinned_when_computed_afresh() -> None:
    """The shipped set's hash is cached once per process; a fresh one must match it."""
    fs = defs.feature_set()
    assert defs._version(fs.features, fs.event_time, fs.event_id) == FRAUD_FEATURE_VERSION
    assert dataclasses.replace(fs).version == FRAUD_FEATURE_VERSION
    assert defs.FEATURE_VERSION == FRAUD_FEATURE_VERSION  # the module attribute, read lazily
    # the event order is part of the hash: the same features ordered otherwise differ
    assert defs._version(fs.features, fs.event_id, fs.event_time) != FRAUD_FEATURE_VERSION


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            defs.FeatureDef("tx_amount", "value", value="tx_amount"),
            "feature 'tx_amount': defined twice",
        ),
        (
            defs.FeatureDef("c0", "count", "customer_id", 0),
            "feature 'c0': window_ns must be >= 1",
        ),
        (
            defs.FeatureDef("cn", "count", "customer_id", None),
            "feature 'cn': window_ns must be >= 1",
        ),
        (
            defs.FeatureDef("fc", "fraud_count", "terminal_id", 7 * DAY, label="tx_fraud"),
            "feature 'fc': fraud_count reads labels, so it needs a label delay (delayed=True)",
        ),
        (
            defs.FeatureDef("fc", "fraud_count", "terminal_id", 7 * DAY, delayed=True),
            "feature 'fc': fraud_count needs its label column",
        ),
        (
            defs.FeatureDef("m", "mean_amount", "customer_id", DAY),
            "feature 'm': mean_amount needs its value column",
        ),
        (
            defs.FeatureDef("n", "count"),
            "feature 'n': count needs an entity",
        ),
    ],
)
def test_bad_definition_is_refused_with_its_reason(extra, message) -> None:
    with pytest.raises(ValueError) as err:
        defs._check((*defs.FEATURES, extra))
    assert str(err.value) == message


def test_a_binary_label_aggregate_needs_a_binary_label() -> None:
    risk = defs.FeatureDef("r", "risk", "customer_id", DAY, True, label="y")
    defs._check((risk,), "regression")  # a mean label is defined for any numeric label
    since = dataclasses.replace(risk, name="s", aggregate="days_since_fraud")
    defs._check((since,), "binary")
    with pytest.raises(ValueError) as err:
        defs._check((since,), "regression")
    assert str(err.value) == "feature 's': days_since_fraud needs a binary label"
    with pytest.raises(ValueError, match="needs a binary label"):
        dataclasses.replace(defs.feature_set(), label_task="regression")


def test_entity_free_and_unlabelled_definitions_are_accepted() -> None:
    # no entity: no window needed; a non-label aggregate needs no delay
    defs._check((*defs.FEATURES, defs.FeatureDef("flag", "night")))
    defs._check((defs.FeatureDef("v", "value", value="amount"),))
    mean = defs.FeatureDef("c1", "mean_amount", "customer_id", 1, delayed=False, value="a")
    defs._check((*defs.FEATURES, mean))


def test_label_delay_accepts_positive_integers_only() -> None:
    assert defs.check_label_delay(1) == 1
    three = defs.check_label_delay(3.0)
    assert three == 3 and type(three) is int
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError) as err:
            defs.check_label_delay(bad)
        assert str(err.value) == f"label_delay_days: must be an integer >= 1, got {bad!r}"


def test_horizon_adds_the_delay_only_to_delayed_windows() -> None:
    fs = defs.feature_set()
    undelayed = defs.FeatureDef("c90", "count", "customer_id", 90 * DAY)
    wide = dataclasses.replace(fs, features=(*fs.features, undelayed))
    assert wide.horizon_ns(7) == 90 * DAY  # 90 (no delay) beats 60 + 7
    assert wide.horizon_ns(40) == 100 * DAY  # 60 + 40 beats 90
    also_delayed = dataclasses.replace(undelayed, delayed=True)
    delayed = dataclasses.replace(fs, features=(*fs.features, also_delayed))
    assert delayed.horizon_ns(7) == 97 * DAY
    assert dataclasses.replace(fs, features=fs.features[:3]).horizon_ns(7) == 0  # no window
    # whole days for the batch look-back, rounded up
    assert defs.horizon_days(7) == 67 and defs.horizon_days(1, "fraud") == 61


def test_horizon_days_rounds_a_partial_day_up(monkeypatch) -> None:
    fs = defs.feature_set()
    hour = defs.FeatureDef("c", "count", "customer_id", 61 * DAY + 3600 * defs.SECOND_NS)
    one = dataclasses.replace(fs, features=(hour,))
    monkeypatch.setattr(defs, "feature_set", lambda use_case: one)
    assert defs.horizon_days(5) == 62


def test_window_days_is_whole_days_as_an_int_else_a_fraction() -> None:
    assert defs.FeatureDef("a", "count", "c", 30 * DAY).window_days == 30
    assert type(defs.FeatureDef("a", "count", "c", 30 * DAY).window_days) is int
    assert defs.FeatureDef("a", "count", "c", DAY // 2).window_days == 0.5
    assert defs.FeatureDef("a", "value").window_days is None


def test_feature_set_derives_the_columns_the_engines_read() -> None:
    fs = defs.feature_set()
    assert fs.entity_columns == ("customer_id", "terminal_id")
    assert fs.value_columns == ("tx_amount",)  # read by many features, listed once
    assert fs.reads_label is True
    assert fs.input_columns == (
        "transaction_id",
        "tx_datetime",
        "customer_id",
        "terminal_id",
        "tx_amount",
        "tx_fraud",
    )
    unlabelled = dataclasses.replace(fs, features=fs.features[:9])
    assert unlabelled.reads_label is False
    assert unlabelled.input_columns[-1] == "tx_amount"  # no label column then
    # a use case by name is cached; a loaded one is translated afresh, to the same set
    assert defs.feature_set("fraud") is fs
    from ml_platform.use_cases.loader import get_use_case

    assert defs.feature_set(get_use_case("fraud")) == fs
