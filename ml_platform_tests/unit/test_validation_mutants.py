"""Validation edges: the missing-column message, partition bounds, reason counts."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_platform.data import contract as c
from ml_platform.data.validation import (
    PARTITION_DATE,
    REASON,
    MissingColumnError,
    reason_counts,
    validate_transactions,
)


def _raw(**over: object) -> pd.DataFrame:
    row = {
        c.TRANSACTION_ID: 1,
        c.TX_DATETIME: "2025-04-02 00:00:00",
        c.CUSTOMER_ID: 2,
        c.TERMINAL_ID: 3,
        c.TX_AMOUNT: 4.5,
        c.TX_FRAUD: 0,
    }
    return pd.DataFrame([row | over])


def test_missing_columns_message_lists_missing_needed_and_received() -> None:
    df = _raw().drop(columns=[c.TERMINAL_ID, c.TX_FRAUD]).assign(extra=1)
    with pytest.raises(MissingColumnError) as err:
        validate_transactions(df, "2025-04-02")
    needed = ", ".join(c.RAW_COLUMNS)
    assert str(err.value) == (
        f"missing required column(s) terminal_id, tx_fraud; the contract needs {needed} "
        "(got transaction_id, tx_datetime, customer_id, tx_amount, extra)"
    )


def test_reason_counts_of_an_empty_quarantine() -> None:
    _, quarantine = validate_transactions(_raw(), "2025-04-02")
    assert quarantine.empty and reason_counts(quarantine) == {}


def _valid_of(df: pd.DataFrame, day: object = "2025-04-02") -> pd.DataFrame:
    valid, quarantine = validate_transactions(df, day)
    assert quarantine.empty, quarantine[REASON].tolist()
    return valid


def _reasons_of(df: pd.DataFrame) -> list[str]:
    _, quarantine = validate_transactions(df, "2025-04-02")
    return quarantine[REASON].tolist()


def test_zero_ids_and_amounts_below_one_are_valid() -> None:
    valid = _valid_of(
        _raw(**{c.TRANSACTION_ID: 0, c.CUSTOMER_ID: 0, c.TERMINAL_ID: 0, c.TX_AMOUNT: 0.0})
    )
    assert valid[[c.TRANSACTION_ID, c.CUSTOMER_ID, c.TERMINAL_ID]].iloc[0].tolist() == [0, 0, 0]
    assert _valid_of(_raw(**{c.TX_AMOUNT: 0.5}))[c.TX_AMOUNT].iloc[0] == 0.5


def test_ids_parsed_through_floats_must_stay_exact() -> None:
    limit = float(2**53)
    assert _reasons_of(_raw(**{c.CUSTOMER_ID: limit})) == ["customer_id: not an integer"]
    assert _valid_of(_raw(**{c.CUSTOMER_ID: limit - 1}))[c.CUSTOMER_ID].iloc[0] == 2**53 - 1
    # integer columns are exact at any size
    big = _raw().astype({c.TRANSACTION_ID: "int64"})
    big[c.TRANSACTION_ID] = 2**62 + 1
    assert _valid_of(big)[c.TRANSACTION_ID].iloc[0] == 2**62 + 1


def test_nullable_and_boolean_columns_are_read() -> None:
    df = pd.concat([_raw(), _raw(**{c.TRANSACTION_ID: 2})], ignore_index=True)
    df[c.CUSTOMER_ID] = pd.array([2, None], dtype="Int64")
    df[c.TX_AMOUNT] = pd.array([None, 3.0], dtype="Float64")
    df[c.TX_FRAUD] = pd.array([1, None], dtype="Int8")
    reasons = _reasons_of(df)
    assert reasons == ["tx_amount: null", "customer_id: null; tx_fraud: null"]
    flags = _raw().assign(**{c.TX_FRAUD: True})
    assert _valid_of(flags)[c.TX_FRAUD].tolist() == [1]


def _times(times: list[str]) -> list[pd.Timestamp]:
    df = pd.concat(
        [_raw(**{c.TRANSACTION_ID: i, c.TX_DATETIME: t}) for i, t in enumerate(times)],
        ignore_index=True,
    )
    return _valid_of(df)[c.TX_DATETIME].tolist()


def test_timestamps_with_offsets_become_naive_utc() -> None:
    assert _times(["2025-04-02T10:00:00+02:00", "2025-04-02T23:00Z"]) == [
        pd.Timestamp("2025-04-02 08:00"),
        pd.Timestamp("2025-04-02 23:00"),
    ]


def test_mixed_iso_forms_in_one_column_are_all_parsed() -> None:
    assert _times(["2025-04-02 11:30", "2025-04-02", "2025-04-02T13:45:10.5"]) == [
        pd.Timestamp("2025-04-02 11:30"),
        pd.Timestamp("2025-04-02 00:00"),
        pd.Timestamp("2025-04-02 13:45:10.5"),
    ]


def test_partition_day_is_a_date_however_it_is_given() -> None:
    from datetime import datetime

    late = _raw(**{c.TX_DATETIME: "2025-04-02 23:59:59"})
    for day in ("2025-04-02", date(2025, 4, 2), datetime(2025, 4, 2, 15, 30)):
        valid, quarantine = validate_transactions(late, day)
        assert len(valid) == 1 and quarantine.empty
    _, quarantine = validate_transactions(late, datetime(2025, 4, 2, 15, 30))
    assert quarantine[PARTITION_DATE].tolist() == []
    with pytest.raises(ValueError):
        validate_transactions(late, "2025-04-02T05:00")


def test_empty_quarantine_keeps_its_text_schema() -> None:
    _, quarantine = validate_transactions(_raw(), "2025-04-02")
    assert quarantine.empty
    assert {col: str(t) for col, t in quarantine.dtypes.items()} == {
        **{col: "string" for col in c.RAW_COLUMNS},
        REASON: "string",
        PARTITION_DATE: "string",
    }
    _, bad = validate_transactions(_raw(**{c.TX_AMOUNT: -1.0}), date(2025, 4, 2))
    assert bad[PARTITION_DATE].tolist() == ["2025-04-02"]
    assert str(bad[REASON].dtype) == "string" and str(bad[PARTITION_DATE].dtype) == "string"


#: the derived id of ``_one_parcel()``
PARCEL_ID = 5189568412988190292


def _parcels(tmp_path, **schema):
    """The non-fraud use case of the generic validation tests (string keys, derived id)."""
    from ml_platform_tests.unit.test_validation_generic import write_parcels

    return write_parcels(tmp_path, **schema)


def _one_parcel(**over: object) -> pd.DataFrame:
    from ml_platform_tests.unit import test_validation_generic as g

    row = {
        g.TIME: pd.Timestamp("2025-01-07 00:00:00"),
        g.DEPOT: "north",
        g.COURIER: "c001",
        g.WEIGHT: 2.5,
        g.PRIORITY: 2,
        g.LABEL: 12.0,
    }
    return pd.DataFrame([{**row, **over}], index=[7])


def test_a_derived_id_is_pinned_and_keeps_the_frame_index(tmp_path) -> None:
    """The id of an event must never change between releases: rows already in the lake
    and scores already served carry it."""
    from ml_platform.data.validation import derive_event_ids

    uc = _parcels(tmp_path)
    ids = derive_event_ids(_one_parcel(), uc)
    assert ids.name == "parcel_id" and ids.dtype == "int64" and ids.index.tolist() == [7]
    assert ids.tolist() == [PARCEL_ID]
    # the same event with its time as tz-aware ISO text: the same id
    assert derive_event_ids(_one_parcel(sent_at="2025-01-07T00:00:00Z"), uc).tolist() == [PARCEL_ID]
    text = derive_event_ids(
        _one_parcel(),
        _parcels(
            tmp_path / "s",
            event_id={
                "column": "parcel_id",
                "type": "string",
                "derive_from": ["depot", "courier", "sent_at"],
            },
        ),
    )
    assert text.name == "parcel_id" and str(text.dtype) == "string"
    assert text.tolist() == [f"{PARCEL_ID:016x}"] and text.index.tolist() == [7]
    with pytest.raises(ValueError) as err:
        derive_event_ids(_one_parcel())
    assert str(err.value) == (
        "use case 'fraud': transaction_id is given by the data, not derived "
        "(schema.event_id has no derive_from)"
    )


def test_whole_float_keys_lose_their_fraction_others_keep_it(tmp_path) -> None:
    from ml_platform.data.validation import derive_event_ids, validate_events

    uc = _parcels(tmp_path)
    whole = pd.DataFrame({"depot": [101.0, np.nan], "courier": [1.5, 2.0]})
    whole = pd.concat([_one_parcel()] * 2, ignore_index=True).assign(**whole)
    valid, quarantine = validate_events(whole, date(2025, 1, 7), uc)
    assert valid["depot"].tolist() == ["101"] and valid["courier"].tolist() == ["1.5"]
    assert quarantine["reason"].tolist() == ["depot: null"]
    big = pd.concat([_one_parcel()] * 2, ignore_index=True).assign(courier=[2.0**53, np.inf])
    assert validate_events(big, date(2025, 1, 7), uc)[0]["courier"].tolist() == [
        "9007199254740992.0",
        "inf",
    ]
    # a key's type is part of its id: the text "101" is the float 101.0's key
    assert (
        derive_event_ids(valid.iloc[:1], uc).tolist()
        == derive_event_ids(_one_parcel(depot="101", courier="1.5"), uc).tolist()
    )


def test_the_schema_of_a_day_holds_its_edges_and_each_typed_check(tmp_path) -> None:
    import pandera.errors

    from ml_platform.data.validation import event_schema, validate_events

    uc = _parcels(tmp_path, rules=[{"column": "weight_kg", "check": "finite"}])
    valid = validate_events(_one_parcel(), date(2025, 1, 7), uc)[0]
    schema = event_schema("2025-01-07", uc)
    schema.validate(valid)  # 00:00:00 of the day is inside it
    schema.validate(valid[list(reversed(valid.columns))])  # column order is free
    last = valid.assign(sent_at=pd.Timestamp("2025-01-07 23:59:59.999999999"))
    schema.validate(last)
    for bad, check in [
        (valid.assign(sent_at=pd.Timestamp("2025-01-08")), "sent_at outside partition day"),
        (valid.assign(sent_at=pd.Timestamp("2025-01-06 23:59:59")), "outside partition day"),
        (valid.assign(weight_kg=np.inf), "finite"),
        (valid.assign(delivery_hours=-np.inf), "finite"),
        (valid.assign(depot=pd.Series([None], dtype="string", index=valid.index)), "null"),
    ]:
        with pytest.raises(pandera.errors.SchemaError, match=check):
            schema.validate(bad)
    # a binary label is 0 or 1, nothing else
    binary = validate_transactions(_raw(), "2025-04-02")[0]
    fraud = event_schema("2025-04-02")
    fraud.validate(binary.assign(tx_fraud=np.int8(1)))
    for label in (2, -1):
        with pytest.raises(pandera.errors.SchemaError, match="isin"):
            fraud.validate(binary.assign(tx_fraud=np.int8(label)))


def test_a_fresh_fraud_schema_refuses_labels_other_than_0_and_1() -> None:
    """On a contract built afresh (the shipped one is cached per process)."""
    import pandera.errors

    from ml_platform.data.validation import EventContract, default_use_case

    schema = EventContract(default_use_case()).schema("2025-04-02")
    valid = validate_transactions(_raw(), "2025-04-02")[0]
    schema.validate(valid.assign(tx_fraud=np.int8(0)))
    for label in (2, -1):
        with pytest.raises(pandera.errors.SchemaError, match="isin"):
            schema.validate(valid.assign(tx_fraud=np.int8(label)))


def test_whole_floats_up_to_but_excluding_2_to_the_53_lose_their_fraction(tmp_path) -> None:
    from ml_platform.data.validation import validate_events

    uc = _parcels(tmp_path)
    for courier, text in [(2.0**53 - 1, "9007199254740991"), (2.0**53, "9007199254740992.0")]:
        valid = validate_events(_one_parcel(courier=courier), date(2025, 1, 7), uc)[0]
        assert valid["courier"].tolist() == [text]


def test_a_numeric_identity_column_is_hashed_in_its_declared_type(tmp_path) -> None:
    from ml_platform.data.validation import derive_event_ids

    uc = _parcels(
        tmp_path,
        event_id={"column": "parcel_id", "type": "int", "derive_from": ["priority"]},
        request=["sent_at", "depot", "courier", "weight_kg", "priority"],
    )
    as_int = derive_event_ids(_one_parcel(priority=2), uc)
    assert derive_event_ids(_one_parcel(priority=2.0), uc).tolist() == as_int.tolist()
    assert derive_event_ids(_one_parcel(priority="2"), uc).tolist() == as_int.tolist()
    assert as_int.tolist() != derive_event_ids(_one_parcel(priority=3), uc).tolist()


def test_one_of_on_a_datetime_column_compares_instants(tmp_path) -> None:
    """A ``one_of`` rule on the event time: the allowed values are read as timestamps."""
    from ml_platform.data.validation import validate_events

    slots = ["2025-01-07 00:00:00", "2025-01-07 06:00:00"]
    uc = _parcels(tmp_path, rules=[{"column": "sent_at", "check": "one_of", "values": slots}])
    raw = pd.concat(
        [
            _one_parcel(sent_at=pd.Timestamp("2025-01-07 06:00")),
            _one_parcel(sent_at=pd.Timestamp("2025-01-07 12:00"), courier="c002"),
        ]
    )
    valid, quarantine = validate_events(raw, date(2025, 1, 7), uc)
    assert valid["sent_at"].tolist() == [pd.Timestamp("2025-01-07 06:00")]
    assert quarantine["reason"].str.startswith("sent_at: not one of").tolist() == [True]


def test_the_contract_cache_evicts_the_oldest_use_case(tmp_path, monkeypatch) -> None:
    """Bounded: past the limit the oldest contract makes room; the newer ones stay cached."""
    from ml_platform.data import validation

    monkeypatch.setattr(validation, "_CONTRACTS", {})
    monkeypatch.setattr(validation, "_MAX_CONTRACTS", 2)
    a, b, d = (_parcels(tmp_path / name) for name in "abd")
    first_a, first_b = validation.event_contract(a), validation.event_contract(b)
    assert validation.event_contract(d).use_case is d
    assert len(validation._CONTRACTS) == 2
    assert validation.event_contract(b) is first_b
    assert validation.event_contract(a) is not first_a
