"""The definitions module: exact required columns, a stable version hash, the horizon."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION, REQUIRED_COLUMNS
from ml_platform.features import definitions as defs

HANDBOOK_ORDER = [
    "tx_amount",
    "tx_during_weekend",
    "tx_during_night",
    *(f"customer_id_nb_tx_{w}day_window" for w in (1, 7, 30)),
    *(f"customer_id_avg_amount_{w}day_window" for w in (1, 7, 30)),
    *(f"terminal_id_nb_tx_{w}day_window" for w in (1, 7, 30)),
    *(f"terminal_id_risk_{w}day_window" for w in (1, 7, 30)),
]


def test_required_columns_come_first_in_handbook_order() -> None:
    assert REQUIRED_COLUMNS == HANDBOOK_ORDER
    assert FEATURE_COLUMNS[: len(HANDBOOK_ORDER)] == HANDBOOK_ORDER
    assert len(set(FEATURE_COLUMNS)) == len(FEATURE_COLUMNS)


#: Aggregates computed from fraud labels (written out here, not taken from the module, so
#: a label aggregate dropped from ``LABEL_AGGREGATES`` is noticed).
READS_LABELS = {
    "risk",
    "fraud_count",
    "days_since_fraud",
    "days_since_first_fraud",
    "fraud_share_since_first",
    "fraud_mean_amount",
}


def test_every_label_feature_is_delayed() -> None:
    assert set(defs.LABEL_AGGREGATES) == READS_LABELS
    label_features = [f for f in defs.FEATURES if f.aggregate in READS_LABELS]
    assert {f.aggregate for f in label_features} == READS_LABELS  # every kind is in use
    for f in defs.FEATURES:
        if f.aggregate in READS_LABELS or f.entity == "terminal_id":
            assert f.delayed, f.name


def test_an_undelayed_label_feature_is_refused() -> None:
    features = defs.FEATURES
    for aggregate in sorted(READS_LABELS):
        f = next(f for f in features if f.aggregate == aggregate)
        with pytest.raises(ValueError, match=f"{f.name}.*reads labels"):
            defs._check((dataclasses.replace(f, delayed=False),))


def test_version_is_deterministic_across_processes() -> None:
    code = "from ml_platform.features import FEATURE_VERSION as v; print(v)"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == FEATURE_VERSION and len(FEATURE_VERSION) == 16


def test_version_changes_with_a_definition() -> None:
    changed = (dataclasses.replace(defs.FEATURES[3], window_ns=2 * defs.DAY_NS), *defs.FEATURES[4:])
    fs = dataclasses.replace(defs.feature_set(), features=defs.FEATURES[:3] + changed)
    assert fs.version != FEATURE_VERSION


def test_horizon_covers_longest_window_plus_delay() -> None:
    assert defs.horizon_days(7) == 60 + 7
    assert defs.horizon_days(1) == 61
