"""Validation edges: the missing-column message, partition bounds, reason counts."""

from __future__ import annotations

import pandas as pd
import pytest

from ml_platform.data import contract as c
from ml_platform.data.validation import MissingColumnError, reason_counts, validate_transactions


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
