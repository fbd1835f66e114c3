"""External daily files source: parquet and CSV written by the test, and the errors.

Also a use case's declared source: its events and side-table rows of a day read from its
function or from daily files, and ``export_source`` writing the one as the other.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ml_platform.data import contract as c
from ml_platform.data.simulator import SCENARIO
from ml_platform.data.sources import (
    SourceFileError,
    daily_files,
    export_days,
    export_source,
    read_events_day,
    read_raw_day,
    read_side_day,
)
from ml_platform.data.validation import validate_events, validate_transactions
from ml_platform.use_cases import UseCase, load_use_case, resolve_settings
from ml_platform.use_cases.loader import PACKAGE_ROOT, USE_CASE_FILE

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


# --- a use case's declared source ------------------------------------------------------------

F1, F2 = date(2013, 3, 10), date(2013, 3, 11)


@pytest.fixture(scope="module")
def flights() -> UseCase:
    return load_use_case(PACKAGE_ROOT / "flights")


def _on_files(root: Path) -> UseCase:
    """The shipped flights folder with files as its default source (a team's copy)."""
    folder = root / "flights"
    shutil.copytree(PACKAGE_ROOT / "flights", folder, ignore=shutil.ignore_patterns("__py*"))
    data = yaml.safe_load((folder / USE_CASE_FILE).read_text())
    data["source"] = {"default": "files"}
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    return load_use_case(folder)


def test_a_package_source_gives_events_and_side_rows_of_a_day(flights) -> None:
    s = resolve_settings(flights, environ={})
    events = read_events_day(flights, F1, s)
    pd.testing.assert_frame_equal(events, flights.hook("source.py:load_day")(F1, s))
    weather = read_side_day(flights, "weather", F1, s)
    pd.testing.assert_frame_equal(weather, flights.hook("source.py:load_weather_day")(F1, s))
    with pytest.raises(ValueError, match="no side table 'metar' \\(declared: weather\\)"):
        read_side_day(flights, "metar", F1, s)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_exported_source_reads_back_as_files(flights, tmp_path, fmt) -> None:
    """The package's days written as files validate to the very same rows."""
    s = resolve_settings(flights, environ={})
    report = export_source(flights, s, tmp_path / "src", start=F1, end=F2, fmt=fmt)
    assert report.as_json() == {
        "use_case": "flights",
        "out": str(tmp_path / "src"),
        "days": 2,
        "rows": sum(len(read_events_day(flights, d, s)) for d in (F1, F2)),
        "side_tables": {"weather": 2 * 72},
    }
    assert sorted(p.name for p in (tmp_path / "src" / "weather").iterdir()) == [
        f"2013-03-10.{fmt}",
        f"2013-03-11.{fmt}",
    ]
    files = _on_files(tmp_path / "cases")
    fs = resolve_settings(files, environ={"FLIGHTS_SOURCE_DIR": str(tmp_path / "src")})
    for day in (F1, F2):
        expected, _ = validate_events(read_events_day(flights, day, s), day, flights)
        got, quarantine = validate_events(read_events_day(files, day, fs), day, files)
        assert quarantine.empty
        pd.testing.assert_frame_equal(got, expected)
        side = read_side_day(files, "weather", day, fs)
        assert len(side) == 72 and set(side.columns) >= {"origin", "time_hour", "visib"}


def test_a_files_source_needs_its_folder_and_names_the_file(tmp_path) -> None:
    files = _on_files(tmp_path / "cases")
    fs = resolve_settings(files, environ={"FLIGHTS_SOURCE_DIR": str(tmp_path / "src")})
    with pytest.raises(FileNotFoundError, match=r"src/weather/2013-03-10\.parquet or"):
        read_side_day(files, "weather", F1, fs)
    with pytest.raises(FileNotFoundError, match=r"src/2013-03-10\.parquet or"):
        read_events_day(files, F1, fs)


def test_the_fraud_export_is_its_declared_simulator(tmp_path) -> None:
    fraud = load_use_case(PACKAGE_ROOT / "fraud")
    s = resolve_settings(fraud, environ={"FRAUD_SIM_N_CUSTOMERS": "40"})
    report = export_source(fraud, s, tmp_path / "out", start=D1, end=D1)
    written = pd.read_parquet(tmp_path / "out" / "2025-04-03.parquet")
    pd.testing.assert_frame_equal(written, read_events_day(fraud, D1, s))
    assert (report.days, report.rows, report.side_rows) == (1, len(written), {})
    with pytest.raises(ValueError, match="end: 2025-04-02 is before start 2025-04-03"):
        export_source(fraud, s, tmp_path / "out", start=D1, end=date(2025, 4, 2))
    with pytest.raises(ValueError, match="--format: must be one of parquet, csv"):
        export_source(fraud, s, tmp_path / "out", fmt="json")


def test_daily_files_lists_the_days_of_a_folder(tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("2025-04-04.csv", "2025-04-03.csv", "2025-04-03.parquet", "notes.txt"):
        (folder / name).write_text("x\n1\n")
    (folder / "2025-04-05.csv").mkdir()  # a folder, not a file
    assert daily_files(folder) == {
        D1: folder / "2025-04-03.parquet",  # Parquet first, as source_file reads it
        D2: folder / "2025-04-04.csv",
    }
    (folder / "2025-02-30.csv").write_text("")
    with pytest.raises(SourceFileError, match="2025-02-30.csv: not a date"):
        daily_files(folder)
    with pytest.raises(FileNotFoundError, match="absent: no such folder"):
        daily_files(tmp_path / "absent")
