"""Validation of a use case that is not fraud, derived from its declaration alone.

The use case is written into a temporary folder and loaded by the real loader: string entity
keys, an event id derived from columns (the data has none), a regression label, a value with a
non-negative rule and an integer extra with a ``one_of`` rule. Its reasons, dtypes, pandera
schema and duplicates must follow from that declaration, and no row may be lost.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.data import contract
from ml_platform.data.validation import (
    MissingColumnError,
    derive_event_ids,
    event_contract,
    event_schema,
    reason_counts,
    rule_masks,
    validate_events,
    validate_transactions,
)
from ml_platform.use_cases.derive import quarantine_reasons
from ml_platform.use_cases.loader import USE_CASE_FILE, UseCase, load_use_case
from ml_platform_tests.unit.test_validation import _corrupt as corrupt_rows

DAY = date(2025, 1, 7)
N = 30
ID, TIME, DEPOT, COURIER, WEIGHT, PRIORITY, LABEL = (
    "parcel_id",
    "sent_at",
    "depot",
    "courier",
    "weight_kg",
    "priority",
    "delivery_hours",
)
IDENTITY = [DEPOT, COURIER, TIME]

DECLARATION: dict[str, Any] = {
    "name": "parcels",
    "description": "Hours a parcel takes to arrive, predicted when it is sent.",
    "service": "parcels_service:Parcels",
    "schema": {
        "event_id": {"column": ID, "type": "int", "derive_from": IDENTITY},
        "event_time": TIME,
        "entities": {DEPOT: "string", COURIER: "string"},
        "values": {WEIGHT: "float"},
        "extras": {PRIORITY: "int"},
        "request": [TIME, DEPOT, COURIER, WEIGHT],
        "rules": [
            {"column": WEIGHT, "check": "non_negative"},
            {"column": PRIORITY, "check": "one_of", "values": [1, 2, 3]},
        ],
    },
    "label": {"column": LABEL, "task": "regression", "delay_days": 3},
    "features": [
        {"kind": "row", "name": "weight", "function": "value", "of": WEIGHT},
        {"kind": "window", "name": "depot_parcels_90min", "entity": DEPOT, "function": "count",
         "window": "90min"},
    ],
    "task": {
        "candidates": ["linear_regression", "lightgbm"],
        "primary_metric": {"name": "mean_absolute_error", "direction": "minimize"},
        "decision": {"kind": "value_and_flag", "flag": "late", "above": 48},
    },
    "source": {"default": "files"},
    "settings": {"start_date": "2025-01-01", "end_date": "2025-01-31"},
}  # fmt: skip


def write_parcels(root: Path, **schema: Any) -> UseCase:
    """The declaration above (schema fields overridden by ``schema``) in ``root/parcels``."""
    folder = root / "parcels"
    folder.mkdir(parents=True)
    data = {**DECLARATION, "schema": {**DECLARATION["schema"], **schema}}
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    return load_use_case(folder)


@pytest.fixture(scope="module")
def parcels(tmp_path_factory) -> UseCase:
    return write_parcels(tmp_path_factory.mktemp("cases"))


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    """One clean day; couriers are unique, so every derived id is too."""
    rng = np.random.default_rng(5)
    seconds = np.sort(rng.integers(0, 86_400, N))
    return pd.DataFrame(
        {
            TIME: pd.Timestamp(DAY) + pd.to_timedelta(seconds, unit="s"),
            DEPOT: rng.choice(["north", "south", "east"], N),
            COURIER: [f"c{i:03d}" for i in range(N)],
            WEIGHT: rng.uniform(0, 30, N).round(2),
            PRIORITY: rng.integers(1, 4, N),
            LABEL: rng.uniform(1, 90, N).round(1),
            "row": np.arange(N),  # an undeclared column: kept
        }
    )


TS = pd.Timestamp
# kind -> (column, bad value written into one row, the reason it must produce)
CORRUPTIONS = {
    "null_depot": (DEPOT, None, "depot: null"),
    "null_courier": (COURIER, np.nan, "courier: null"),
    "null_weight": (WEIGHT, None, "weight_kg: null"),
    "text_weight": (WEIGHT, "heavy", "weight_kg: unparseable"),
    "neg_weight": (WEIGHT, -0.5, "weight_kg: negative"),
    "neg_inf_weight": (WEIGHT, -np.inf, "weight_kg: negative"),
    "null_priority": (PRIORITY, None, "priority: null"),
    "text_priority": (PRIORITY, "high", "priority: unparseable"),
    "frac_priority": (PRIORITY, 1.5, "priority: not an integer"),
    "priority_4": (PRIORITY, 4, "priority: not one of 1, 2, 3"),
    "null_label": (LABEL, None, "delivery_hours: null"),
    "text_label": (LABEL, "soon", "delivery_hours: unparseable"),
    "inf_label": (LABEL, np.inf, "delivery_hours: not finite"),
    "null_time": (TIME, None, "sent_at: null"),
    "text_time": (TIME, "teatime", "sent_at: unparseable"),
    "next_day": (TIME, TS("2025-01-08 00:00:00"), "sent_at: outside partition day"),
    "prev_day": (TIME, "2025-01-06 23:59:59", "sent_at: outside partition day"),
}


def _corrupt(good: pd.DataFrame, kinds: dict[int, str]) -> pd.DataFrame:
    """The fraud tests' corruption helper over this file's corruptions."""
    return corrupt_rows(good, kinds, CORRUPTIONS)


def test_reasons_follow_from_the_declaration(parcels):
    """Types imply null/unparseable/not an integer/not finite, the rules add theirs; a derived
    id has no checks of its own but its duplicates are reported under its name."""
    expected = [
        "depot: null",
        "courier: null",
        "weight_kg: null",
        "weight_kg: unparseable",
        "weight_kg: negative",
        "priority: null",
        "priority: unparseable",
        "priority: not an integer",
        "priority: not one of 1, 2, 3",
        "delivery_hours: null",
        "delivery_hours: unparseable",
        "delivery_hours: not finite",
        "sent_at: null",
        "sent_at: unparseable",
        "sent_at: outside partition day",
        "parcel_id: duplicate",
    ]
    assert quarantine_reasons(parcels) == expected
    columns = [TIME, DEPOT, COURIER, WEIGHT, PRIORITY, LABEL]
    empty = pd.DataFrame({col: pd.Series([], dtype=object) for col in columns})
    masks, parsed = rule_masks(empty, DAY, parcels)
    assert [*masks, "parcel_id: duplicate"] == expected
    assert list(parsed.columns) == columns


def test_clean_day_passes_whole_in_declared_dtypes(parcels, good):
    valid, quarantine = validate_events(good, DAY, parcels)
    assert quarantine.empty and list(quarantine.columns) == [
        TIME, DEPOT, COURIER, WEIGHT, PRIORITY, LABEL, "row", "reason", "partition_date"
    ]  # fmt: skip
    assert {col: str(dtype) for col, dtype in valid.dtypes.items()} == {
        ID: "int64",
        TIME: "datetime64[ns]",
        DEPOT: "string",
        COURIER: "string",
        WEIGHT: "float64",
        PRIORITY: "int64",
        LABEL: "float64",
        "row": "int64",
    }
    expected = good.astype({DEPOT: "string", COURIER: "string"})
    pd.testing.assert_frame_equal(valid.drop(columns=ID), expected)


def test_derived_ids_are_stable_whatever_the_input_looks_like(parcels, good):
    """The id is a hash of the identity columns in their declared types: the same event gets
    the same id from typed data, from a CSV, shuffled, or with another weight."""
    valid = validate_events(good, DAY, parcels)[0]
    ids = dict(zip(valid["row"], valid[ID], strict=True))
    assert valid[ID].is_unique and (valid[ID] >= 0).all()
    buf = io.StringIO()
    good.sample(frac=1, random_state=3).assign(**{WEIGHT: 1.0}).to_csv(buf, index=False)
    from_csv = pd.read_csv(io.StringIO(buf.getvalue()))
    assert from_csv[TIME].dtype == object  # timestamps arrive as text
    again = validate_events(from_csv, DAY, parcels)[0]
    assert dict(zip(again["row"], again[ID], strict=True)) == ids
    pd.testing.assert_series_equal(derive_event_ids(valid, parcels), valid[ID])
    request = pd.DataFrame(
        {
            TIME: [valid[TIME][0].tz_localize("UTC").tz_convert("Asia/Tokyo").isoformat()],
            DEPOT: [valid[DEPOT][0]],
            COURIER: [valid[COURIER][0]],
        }
    )  # a request's fields as JSON gives them: the same event, the same id
    assert derive_event_ids(request, parcels).tolist() == [valid[ID][0]]
    moved = good.assign(**{TIME: good[TIME] + pd.Timedelta(seconds=1)})
    assert not set(validate_events(moved, DAY, parcels)[0][ID]) & set(ids.values())


def test_string_ids_and_string_keys_read_as_numbers(tmp_path, good):
    """A string id is the hash's hex text; numeric-looking keys stay their text, without the
    '.0' a column with a gap gets when read as float."""
    uc = write_parcels(tmp_path, event_id={"column": ID, "type": "string", "derive_from": IDENTITY})
    raw = good.astype({DEPOT: object})
    raw[DEPOT] = [float(100 + i % 3) for i in range(N)]
    raw.loc[4, DEPOT] = np.nan
    valid, quarantine = validate_events(raw.astype({DEPOT: float}), DAY, uc)
    assert list(quarantine["reason"]) == ["depot: null"]
    assert set(valid[DEPOT]) == {"100", "101", "102"}
    assert str(valid[ID].dtype) == "string"
    assert valid[ID].str.fullmatch(r"[0-9a-f]{16}").all() and valid[ID].is_unique
    ints = derive_event_ids(valid, write_parcels(tmp_path / "int"))
    assert list(valid[ID]) == [f"{i:016x}" for i in ints]


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_bad_kind_is_quarantined_with_its_reason(parcels, good, kind):
    valid, quarantine = validate_events(_corrupt(good, {5: kind}), DAY, parcels)
    assert len(valid) == N - 1 and len(quarantine) == 1
    assert quarantine["reason"].iloc[0] == CORRUPTIONS[kind][2]
    assert quarantine["row"].iloc[0] == "5" and quarantine["partition_date"].iloc[0] == "2025-01-07"
    assert 5 not in set(valid["row"])


def test_only_declared_rules_apply(parcels, good):
    """An infinite weight is non-negative and no finite rule is declared for it: it passes."""
    raw = good.assign(**{WEIGHT: good[WEIGHT].where(good["row"] != 2, np.inf)})
    valid, quarantine = validate_events(raw, DAY, parcels)
    assert quarantine.empty and np.isinf(valid[WEIGHT].iloc[2])


@pytest.mark.parametrize(
    ("rule", "value", "reason"),
    [
        ({"check": "range", "min": 0.1, "max": 25}, 0.05, "weight_kg: outside [0.1, 25]"),
        ({"check": "range", "min": 0.1, "max": 25}, 25.5, "weight_kg: outside [0.1, 25]"),
        ({"check": "range", "max": 25}, 25.5, "weight_kg: above 25"),
        ({"check": "range", "min": 1}, 0.5, "weight_kg: below 1"),
        ({"check": "finite"}, np.inf, "weight_kg: not finite"),
    ],
)
def test_declared_value_rules_quarantine_and_bind_the_schema(tmp_path, good, rule, value, reason):
    """A bound itself is allowed; beyond it the row is quarantined and the pandera schema
    refuses it too."""
    import pandera.errors

    uc = write_parcels(tmp_path, rules=[{"column": WEIGHT, **rule}])
    edge = rule.get("max", rule.get("min", 1.0))
    raw = good.assign(**{WEIGHT: 5.0})
    raw.loc[1, WEIGHT], raw.loc[3, WEIGHT] = edge, value
    valid, quarantine = validate_events(raw, DAY, uc)
    assert list(quarantine["reason"]) == [reason] and quarantine["row"].iloc[0] == "3"
    assert valid.loc[valid["row"] == 1, WEIGHT].item() == edge
    bad = valid.assign(**{WEIGHT: valid[WEIGHT].where(valid["row"] != 1, value)})
    with pytest.raises(pandera.errors.SchemaError):
        event_schema(None, uc).validate(bad)


def test_one_of_a_string_key(tmp_path, good):
    uc = write_parcels(
        tmp_path, rules=[{"column": DEPOT, "check": "one_of", "values": ["north", "south"]}]
    )
    valid, quarantine = validate_events(good, DAY, uc)
    assert set(quarantine["reason"]) == {"depot: not one of north, south"}
    assert set(quarantine[DEPOT]) == {"east"} and set(valid[DEPOT]) == {"north", "south"}
    with pytest.raises(Exception, match="isin"):
        event_schema(None, uc).validate(valid.assign(**{DEPOT: "west"}))


def test_duplicates_of_the_derived_id_keep_the_first_valid_copy(parcels, good):
    raw = good.copy()
    raw.loc[7, IDENTITY] = raw.loc[3, IDENTITY].to_numpy()  # same event again, later
    raw.loc[7, WEIGHT] = 99.0  # other values do not make it another event
    raw.loc[9, IDENTITY] = raw.loc[12, IDENTITY].to_numpy()
    raw.loc[9, WEIGHT] = -1.0  # the first copy is bad itself, so the second survives
    valid, quarantine = validate_events(raw, DAY, parcels)
    assert dict(zip(quarantine["row"], quarantine["reason"], strict=True)) == {
        "7": "parcel_id: duplicate",
        "9": "weight_kg: negative",
    }
    assert len(valid) == N - 2 and {3, 12} <= set(valid["row"]) and valid[ID].is_unique
    assert reason_counts(quarantine) == {"parcel_id: duplicate": 1, "weight_kg: negative": 1}


def test_several_reasons_on_one_row_in_declaration_order(parcels, good):
    raw = _corrupt(good, {0: "inf_label", 1: "priority_4"})
    raw.iat[0, raw.columns.get_loc(WEIGHT)] = -2
    raw.iat[0, raw.columns.get_loc(DEPOT)] = None
    _, quarantine = validate_events(raw, DAY, parcels)
    assert list(quarantine["reason"]) == [
        "depot: null; weight_kg: negative; delivery_hours: not finite",
        "priority: not one of 1, 2, 3",
    ]


def test_required_columns_come_from_the_schema(parcels, good):
    """The derived id is not required (the data has none); every declared column is."""
    assert ID not in good.columns
    with pytest.raises(MissingColumnError, match=r"column\(s\) courier, delivery_hours; "):
        validate_events(good.drop(columns=[COURIER, LABEL]), DAY, parcels)


def test_undeclared_columns_are_dropped_when_the_schema_says_so(tmp_path, good):
    uc = write_parcels(tmp_path, keep_extra_columns=False)
    valid, quarantine = validate_events(_corrupt(good, {1: "neg_weight"}), DAY, uc)
    assert "row" not in valid.columns and "row" not in quarantine.columns
    assert list(valid.columns) == [ID, TIME, DEPOT, COURIER, WEIGHT, PRIORITY, LABEL]


def test_pandera_schema_holds_the_declared_rules(parcels, good):
    import pandera.errors

    valid = validate_events(good, DAY, parcels)[0]
    schema = event_schema(DAY.isoformat(), parcels)
    assert schema is event_schema(DAY.isoformat(), parcels)  # derived once per day
    assert schema.name == "parcels_valid_events"
    schema.validate(valid)
    broken = {
        "negative weight": valid.assign(**{WEIGHT: valid[WEIGHT].where(valid.index != 0, -1.0)}),
        "priority 5": valid.assign(**{PRIORITY: valid[PRIORITY].where(valid.index != 0, 5)}),
        "infinite label": valid.assign(**{LABEL: valid[LABEL].where(valid.index != 0, np.inf)}),
        "repeated id": valid.assign(**{ID: valid[ID].where(valid.index != 1, valid[ID][0])}),
        "integer keys": valid.assign(**{DEPOT: 1}),
        "null key": valid.assign(**{COURIER: valid[COURIER].where(valid.index != 0, None)}),
    }
    for what, frame in broken.items():
        with pytest.raises(pandera.errors.SchemaError):
            schema.validate(frame)
            pytest.fail(f"the schema let {what} through")
    with pytest.raises(pandera.errors.SchemaError, match="sent_at outside partition day"):
        event_schema("2025-01-08", parcels).validate(valid)


def test_fraud_stays_the_default(good):
    """Without a use case the flagship's contract applies; asking for an id it does not
    derive is an error naming the use case."""
    with pytest.raises(MissingColumnError, match="the contract needs transaction_id"):
        validate_transactions(good, DAY)
    with pytest.raises(ValueError, match="use case 'fraud': transaction_id is given by the data"):
        derive_event_ids(good)


def test_the_fraud_contract_is_the_fraud_declaration():
    """``contract`` spells fraud's columns for the modules that import them; they must be
    exactly what validation derives from the declaration (names, order, dtypes, request)."""
    derived = event_contract()
    assert derived.use_case.name == "fraud" and derived.required == derived.columns
    assert derived.columns == contract.RAW_COLUMNS
    schema = derived.use_case.spec.event_schema
    assert (
        schema.event_id.column,
        schema.event_time,
    ) == (contract.TRANSACTION_ID, contract.TX_DATETIME)
    assert tuple(schema.entities) == (contract.CUSTOMER_ID, contract.TERMINAL_ID)
    assert tuple(schema.values) == (contract.TX_AMOUNT,)
    assert derived.use_case.spec.label.column == contract.TX_FRAUD
    assert tuple(schema.request) == contract.REQUEST_COLUMNS


def test_a_binary_label_is_zero_or_one_in_the_schema():
    """The flagship's label is binary: the schema derived for it refuses any other value."""
    import pandera.errors

    from ml_platform.data.simulator import generate_day

    day = generate_day(date(2025, 4, 2), seed=2, n_customers=50, n_terminals=100).head(20)
    schema = event_schema("2025-04-02")
    schema.validate(day)
    label = contract.TX_FRAUD
    with pytest.raises(pandera.errors.SchemaError, match="isin"):
        schema.validate(day.assign(**{label: day[label].where(day.index != 0, 2)}))


kinds_strategy = st.lists(
    st.sampled_from(["ok", "ok", "ok", "dup", *CORRUPTIONS]), min_size=N, max_size=N
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kinds=kinds_strategy, order_seed=st.integers(0, 2**16))
def test_property_valid_plus_quarantined_is_the_input(parcels, good, kinds, order_seed):
    """Row for row: every clean row is valid, every broken or repeated one is quarantined
    with (at least) its reason, and the valid ids are unique."""
    rng = np.random.default_rng(order_seed)
    corrupt = {i: k for i, k in enumerate(kinds) if k not in ("ok", "dup")}
    raw = _corrupt(good, corrupt)
    bad = set(corrupt)
    clean_before: list[int] = []
    for i, kind in enumerate(kinds):
        if kind == "dup" and clean_before:
            src = int(rng.choice(clean_before))
            for col in IDENTITY:
                raw.iat[i, raw.columns.get_loc(col)] = good[col].iloc[src]
            bad.add(i)
        elif kind in ("ok", "dup"):
            clean_before.append(i)
    valid, quarantine = validate_events(raw, DAY, parcels)
    assert len(valid) + len(quarantine) == N
    assert set(valid["row"]) == set(range(N)) - bad
    assert sorted(quarantine["row"].astype(int)) == sorted(bad)
    for row, reason in zip(quarantine["row"].astype(int), quarantine["reason"], strict=True):
        kind = kinds[row]
        want = "parcel_id: duplicate" if kind == "dup" else CORRUPTIONS[kind][2]
        assert want in reason.split("; ")
    assert valid[ID].is_unique
