"""The lake's day split: what a single-run backfill hands to the IO manager."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.data.lake import split_by_day

START = pd.Timestamp("2025-04-01")


def _frame(offsets_s: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": range(len(offsets_s)),
            "tx_datetime": START + pd.to_timedelta(offsets_s, unit="s"),
        }
    )


def test_split_keeps_requested_days_in_order_and_drops_the_rest() -> None:
    day = 86_400
    df = _frame([5, 2 * day + 1, 10, day - 1, 3 * day, 2 * day])
    parts = split_by_day(df, ["2025-04-01", "2025-04-02", "2025-04-03"])
    assert list(parts) == ["2025-04-01", "2025-04-02", "2025-04-03"]
    assert parts["2025-04-01"]["transaction_id"].tolist() == [0, 2, 3]  # input order kept
    assert parts["2025-04-02"].empty and list(parts["2025-04-02"].columns) == list(df.columns)
    assert parts["2025-04-03"]["transaction_id"].tolist() == [1, 5]  # day 4 (id 4) dropped


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=6 * 86_400 - 1), max_size=80))
def test_split_equals_a_per_day_filter(offsets_s: list[int]) -> None:
    df = _frame(offsets_s)
    keys = [f"2025-04-0{d}" for d in (2, 3, 5)]
    parts = split_by_day(df, keys)
    for key in keys:
        expected = df[df["tx_datetime"].dt.strftime("%Y-%m-%d") == key].reset_index(drop=True)
        pd.testing.assert_frame_equal(parts[key], expected)
