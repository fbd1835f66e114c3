"""Validation + quarantine: every bad-input kind, messy CSV, and a property test."""

from __future__ import annotations

import io
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.data import contract as c
from ml_platform.data.simulator import generate_day
from ml_platform.data.validation import (
    MissingColumnError,
    reason_counts,
    transaction_schema,
    validate_transactions,
)

DAY = date(2025, 4, 2)
N = 40


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    df = generate_day(DAY, seed=11, n_customers=200, n_terminals=400).head(N)
    assert len(df) == N
    return df.assign(row=np.arange(N))


TS = pd.Timestamp
# kind -> (column, bad value written into one row, the reason it must produce)
CORRUPTIONS = {
    "null_amount": (c.TX_AMOUNT, None, "tx_amount: null"),
    "text_amount": (c.TX_AMOUNT, "12,5€", "tx_amount: unparseable"),
    "neg_amount": (c.TX_AMOUNT, -3.2, "tx_amount: negative"),
    "inf_amount": (c.TX_AMOUNT, np.inf, "tx_amount: not finite"),
    "nan_amount": (c.TX_AMOUNT, np.nan, "tx_amount: null"),
    "null_customer": (c.CUSTOMER_ID, None, "customer_id: null"),
    "text_customer": (c.CUSTOMER_ID, "bob", "customer_id: unparseable"),
    "frac_customer": (c.CUSTOMER_ID, 4.5, "customer_id: not an integer"),
    "neg_terminal": (c.TERMINAL_ID, -1, "terminal_id: negative"),
    "null_id": (c.TRANSACTION_ID, None, "transaction_id: null"),
    "neg_id": (c.TRANSACTION_ID, -9, "transaction_id: negative"),
    "label_2": (c.TX_FRAUD, 2, "tx_fraud: not 0/1"),
    "label_text": (c.TX_FRAUD, "yes", "tx_fraud: not 0/1"),
    "null_label": (c.TX_FRAUD, None, "tx_fraud: null"),
    "next_day": (c.TX_DATETIME, TS("2025-04-03 00:00:00"), "tx_datetime: outside partition day"),
    "prev_day": (c.TX_DATETIME, "2025-04-01 23:59:59", "tx_datetime: outside partition day"),
    "text_time": (c.TX_DATETIME, "noonish", "tx_datetime: unparseable"),
    "null_time": (c.TX_DATETIME, None, "tx_datetime: null"),
}


def _corrupt(
    good: pd.DataFrame, kinds: dict[int, str], corruptions: dict[str, tuple] = CORRUPTIONS
) -> pd.DataFrame:
    """An object-dtype copy (like messy input) with row i broken the way kinds[i] says."""
    raw = good.astype(object)
    for i, kind in kinds.items():
        col, value, _ = corruptions[kind]
        raw.iat[i, raw.columns.get_loc(col)] = value
    return raw


def test_clean_day_passes_whole_in_contract_dtypes(good):
    valid, quarantine = validate_transactions(good, DAY)
    assert quarantine.empty and list(quarantine.columns)[-2:] == ["reason", "partition_date"]
    pd.testing.assert_frame_equal(valid, good.reset_index(drop=True))


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_bad_kind_is_quarantined_with_its_reason(good, kind):
    raw = _corrupt(good, {5: kind})
    valid, quarantine = validate_transactions(raw, DAY)
    assert len(valid) == N - 1 and len(quarantine) == 1
    assert quarantine["reason"].iloc[0] == CORRUPTIONS[kind][2]
    assert quarantine["row"].iloc[0] == "5" and quarantine["partition_date"].iloc[0] == "2025-04-02"
    assert {col: str(valid[col].dtype) for col in c.RAW_COLUMNS} == c.RAW_COLUMNS
    assert 5 not in set(valid["row"])


def test_duplicates_keep_the_first_valid_copy(good):
    raw = good.copy()
    raw.loc[7, c.TRANSACTION_ID] = raw.loc[3, c.TRANSACTION_ID]  # later copy: quarantined
    raw.loc[9, c.TRANSACTION_ID] = raw.loc[12, c.TRANSACTION_ID]
    raw.loc[9, c.TX_AMOUNT] = -1.0  # first copy is bad itself, so the second one survives
    valid, quarantine = validate_transactions(raw, DAY)
    assert len(valid) == N - 2
    assert dict(zip(quarantine["row"], quarantine["reason"], strict=True)) == {
        "7": "transaction_id: duplicate",
        "9": "tx_amount: negative",
    }
    assert {3, 12} <= set(valid["row"])


def test_several_reasons_on_one_row_and_counts(good):
    raw = _corrupt(good, {0: "neg_amount", 1: "label_2", 2: "neg_amount"})
    raw.iat[0, raw.columns.get_loc(c.TX_FRAUD)] = 7
    valid, quarantine = validate_transactions(raw, DAY)
    assert len(valid) == N - 3
    assert quarantine["reason"].iloc[0] == "tx_amount: negative; tx_fraud: not 0/1"
    assert reason_counts(quarantine) == {"tx_amount: negative": 2, "tx_fraud: not 0/1": 2}


def test_missing_column_fails_with_its_name(good):
    with pytest.raises(MissingColumnError, match="tx_amount"):
        validate_transactions(good.drop(columns=[c.TX_AMOUNT]), DAY)
    with pytest.raises(ValueError, match="terminal_id, tx_fraud"):
        validate_transactions(good.drop(columns=[c.TERMINAL_ID, c.TX_FRAUD]), DAY)


def test_messy_csv_keeps_every_good_row(good):
    """Strings in numeric columns make pandas read text columns; good rows must survive."""
    raw = _corrupt(good, {1: "text_amount", 2: "text_customer", 3: "text_time", 4: "label_text"})
    buf = io.StringIO()
    raw.to_csv(buf, index=False)
    terminal = good[c.TERMINAL_ID].iloc[6]
    text = buf.getvalue().replace(f",{terminal},", f", {terminal} ,", 1)  # padded number
    from_csv = pd.read_csv(io.StringIO(text))
    assert from_csv[c.TX_AMOUNT].dtype == object and from_csv[c.TX_DATETIME].dtype == object
    valid, quarantine = validate_transactions(from_csv, DAY)
    assert len(valid) == N - 4 and sorted(quarantine["row"].astype(int)) == [1, 2, 3, 4]
    expected = good[~good["row"].isin([1, 2, 3, 4])].reset_index(drop=True)
    pd.testing.assert_frame_equal(valid[list(c.RAW_COLUMNS)], expected[list(c.RAW_COLUMNS)])


def test_timezones_and_partition_key_strings(good):
    aware = good.assign(**{c.TX_DATETIME: good[c.TX_DATETIME].dt.tz_localize("UTC")})
    valid, quarantine = validate_transactions(aware, "2025-04-02")
    assert quarantine.empty and valid[c.TX_DATETIME].equals(
        good[c.TX_DATETIME].reset_index(drop=True)
    )
    shifted = aware.assign(**{c.TX_DATETIME: aware[c.TX_DATETIME].dt.tz_convert("Asia/Tokyo")})
    assert validate_transactions(shifted, DAY)[0][c.TX_DATETIME].equals(valid[c.TX_DATETIME])


def test_pandera_schema_rejects_what_validation_quarantines(good):
    import pandera.errors

    schema = transaction_schema("2025-04-02")
    schema.validate(good)
    bad = good.copy()
    bad.loc[0, c.TX_AMOUNT] = -1.0
    with pytest.raises(pandera.errors.SchemaError):
        schema.validate(bad)
    with pytest.raises(pandera.errors.SchemaError):
        transaction_schema("2025-04-03").validate(good)


kinds_strategy = st.lists(
    st.sampled_from(["ok", "ok", "ok", "dup", *CORRUPTIONS]), min_size=N, max_size=N
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kinds=kinds_strategy, order_seed=st.integers(0, 2**16))
def test_property_no_good_row_lost_no_bad_row_passes(good, kinds, order_seed):
    rng = np.random.default_rng(order_seed)
    corrupt = {i: k for i, k in enumerate(kinds) if k not in ("ok", "dup")}
    raw = _corrupt(good, corrupt)
    bad = set(corrupt)
    clean_before: list[int] = []
    for i, kind in enumerate(kinds):
        if kind == "dup" and clean_before:
            src = int(rng.choice(clean_before))
            raw.iat[i, raw.columns.get_loc(c.TRANSACTION_ID)] = good[c.TRANSACTION_ID].iloc[src]
            bad.add(i)
        elif kind in ("ok", "dup"):
            clean_before.append(i)
    valid, quarantine = validate_transactions(raw, DAY)
    assert len(valid) + len(quarantine) == N
    assert set(valid["row"]) == set(range(N)) - bad
    assert set(quarantine["row"].astype(int)) == bad
    for row, reason in zip(quarantine["row"].astype(int), quarantine["reason"], strict=True):
        kind = kinds[row]
        want = "transaction_id: duplicate" if kind == "dup" else CORRUPTIONS[kind][2]
        assert want in reason
    assert valid[c.TRANSACTION_ID].is_unique
