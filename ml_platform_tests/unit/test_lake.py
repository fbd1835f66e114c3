"""The lake: the day split a single-run backfill hands to the IO manager, and the
multi-partition read/write paths batch scoring relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.data import lake
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
    keys = [f"2025-04-0{d}" for d in (2, 3, 5)]
    # unsorted input (sorted internally) and sorted input (sliced without a copy)
    for df in (_frame(offsets_s), _frame(sorted(offsets_s))):
        parts = split_by_day(df, keys)
        mask = lake.on_days(df, keys)
        assert mask.tolist() == df["tx_datetime"].dt.strftime("%Y-%m-%d").isin(keys).tolist()
        for key in keys:
            expected = df[df["tx_datetime"].dt.strftime("%Y-%m-%d") == key]
            pd.testing.assert_frame_equal(parts[key], expected.reset_index(drop=True))


def test_partitions_round_trip_in_parallel(tmp_path: Path) -> None:
    day = 86_400
    df = _frame([1, day + 1, day + 2, 3 * day + 5]).assign(
        score=[0.1, 0.2, 0.3, 0.4], version=pd.Series(["1", "1", "2", "2"], dtype="string")
    )
    keys = ["2025-04-01", "2025-04-02", "2025-04-03", "2025-04-04"]
    assert lake.write_partitions(split_by_day(df, keys), tmp_path, "t", threads=2) == 4
    assert lake.list_partitions(tmp_path, "t") == keys
    back = lake.read_partitions(tmp_path, "t", keys)
    pd.testing.assert_frame_equal(back, df)  # dtypes too (string stays string)


def test_read_partitions_of_different_schemas_falls_back_per_file(tmp_path: Path) -> None:
    """An empty day written without rows has untyped columns; the read still works."""
    full = pd.DataFrame({"transaction_id": [1, 2], "score": [0.5, 0.25]})
    lake.write_partition(
        pd.DataFrame(columns=["transaction_id", "score"]), tmp_path, "t", "2025-04-01"
    )
    lake.write_partition(full, tmp_path, "t", "2025-04-02")
    back = lake.read_partitions(tmp_path, "t", ["2025-04-01", "2025-04-02"])
    assert back["transaction_id"].tolist() == [1, 2]
    np.testing.assert_array_equal(back["score"].to_numpy(float), [0.5, 0.25])
