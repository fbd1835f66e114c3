"""External daily files source: parquet and CSV written by the test, and the errors."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from ml_platform.data import contract as c
from ml_platform.data.simulator import SCENARIO
from ml_platform.data.sources import SourceFileError, export_days, read_raw_day
from ml_platform.data.validation import validate_transactions

D1, D2 = date(2025, 4, 3), date(2025, 4, 4)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_exported_files_read_back_like_the_simulator(settings_env, tmp_path, fmt):
    sim_settings = settings_env()
    expected = {d: read_raw_day(d, sim_settings) for d in (D1, D2)}
    paths = export_days(sim_settings, D1, D2, tmp_path / "in", fmt=fmt)
    assert [p.name for p in paths] == [f"2025-04-03.{fmt}", f"2025-04-04.{fmt}"]

    files = settings_env(source="files", source_dir=tmp_path / "in")
    for day in (D1, D2):
        raw = read_raw_day(day, files)
        assert SCENARIO in raw.columns  # extra columns are kept
        valid, quarantine = validate_transactions(raw, day)
        assert quarantine.empty
        pd.testing.assert_frame_equal(valid, expected[day], check_dtype=fmt == "parquet")
        assert {col: str(valid[col].dtype) for col in c.RAW_COLUMNS} == c.RAW_COLUMNS


def test_missing_file_names_the_file(settings_env, tmp_path):
    (tmp_path / "in").mkdir()
    s = settings_env(source="files", source_dir=tmp_path / "in")
    with pytest.raises(FileNotFoundError, match=r"in/2025-04-03\.parquet or 2025-04-03\.csv"):
        read_raw_day(D1, s)


@pytest.mark.parametrize(
    ("name", "content"),
    [("2025-04-03.parquet", b"PAR1 this is not parquet"), ("2025-04-03.csv", b"")],
)
def test_unreadable_file_names_the_file_and_problem(settings_env, tmp_path, name, content):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / name).write_bytes(content)
    s = settings_env(source="files", source_dir=tmp_path / "in")
    with pytest.raises(SourceFileError, match=rf"{name}: unreadable \(\w+"):
        read_raw_day(D1, s)


def test_parquet_wins_over_csv_and_bad_format_is_named(settings_env, tmp_path):
    s = settings_env()
    export_days(s, D1, D1, tmp_path / "in", fmt="csv")
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "in" / "2025-04-03.parquet")
    files = settings_env(source="files", source_dir=tmp_path / "in")
    assert list(read_raw_day(D1, files).columns) == ["x"]
    with pytest.raises(ValueError, match="fmt"):
        export_days(s, D1, D1, tmp_path / "x", fmt="json")
