"""Validation of per-row label times and of side-table rows, on the shipped flights use case.

A label known at a per-row time (``label.known_at``) must be known after its event and at
most ``known_within`` later; a side table's rows need typed keys and a time in their day,
while a missing value is allowed. Real days of the flights source are corrupted row by row.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.data.validation import (
    MissingColumnError,
    event_schema,
    reason_counts,
    validate_events,
    validate_side_rows,
)
from ml_platform.use_cases import load_use_case
from ml_platform.use_cases.derive import (
    KNOWN_BEFORE_EVENT,
    KNOWN_TOO_LATE,
    quarantine_reasons,
    side_table_reasons,
)
from ml_platform.use_cases.loader import PACKAGE_ROOT, UseCase

DAY = date(2013, 7, 4)
EVENT, KNOWN = "predict_at", "dep_at"
BEFORE, LATE = f"{KNOWN}: {KNOWN_BEFORE_EVENT}", f"{KNOWN}: {KNOWN_TOO_LATE}"
WITHIN = pd.Timedelta(days=2)
TS = pd.Timestamp


@pytest.fixture(scope="module")
def flights() -> UseCase:
    return load_use_case(PACKAGE_ROOT / "flights")


@pytest.fixture(scope="module")
def day(flights) -> pd.DataFrame:
    return flights.hook("source.py:load_day")(DAY)


@pytest.fixture(scope="module")
def weather(flights) -> pd.DataFrame:
    return flights.hook("source.py:load_weather_day")(DAY)


def test_the_label_time_reasons_follow_its_parse_reasons(flights) -> None:
    reasons = quarantine_reasons(flights)
    at = reasons.index(f"{KNOWN}: unparseable")
    assert reasons[at + 1 : at + 3] == [BEFORE, LATE]
    assert reasons[-1] == "flight_id: duplicate"
    fraud = quarantine_reasons(load_use_case(PACKAGE_ROOT / "fraud"))
    assert not any(KNOWN_BEFORE_EVENT in r or KNOWN_TOO_LATE in r for r in fraud)


def _with_known_at(day: pd.DataFrame, offsets: dict[int, object]) -> pd.DataFrame:
    raw = day.astype({KNOWN: object})
    for i, value in offsets.items():
        at = raw.at[i, EVENT]
        raw.at[i, KNOWN] = at + value if isinstance(value, pd.Timedelta) else value
    return raw


def test_label_times_before_their_event_or_too_late_are_quarantined(flights, day) -> None:
    raw = _with_known_at(
        day,
        {
            0: pd.Timedelta(0),  # at the event: the prediction could see it
            1: pd.Timedelta(minutes=-5),
            2: WITHIN + pd.Timedelta(minutes=1),
            3: WITHIN,  # the bound itself is allowed
            4: pd.Timedelta(seconds=1),
            5: "not a time",
            6: None,
        },
    )
    valid, quarantine = validate_events(raw, DAY, flights)
    assert len(valid) + len(quarantine) == len(day)
    assert list(quarantine["reason"]) == [
        BEFORE,
        BEFORE,
        LATE,
        f"{KNOWN}: unparseable",
        f"{KNOWN}: null",
    ]
    kept = valid.set_index("flight")
    for i in (3, 4):
        assert day.at[i, "flight"] in kept.index


def test_label_times_are_parsed_like_the_event_time(flights, day) -> None:
    """Text and tz-aware times become naive UTC before they are compared."""
    raw = day.head(3).astype({KNOWN: object, EVENT: object})
    raw.at[0, KNOWN] = (raw.at[0, EVENT] + pd.Timedelta(hours=3)).isoformat()
    aware = (raw.at[1, EVENT] + pd.Timedelta(hours=3)).tz_localize("UTC")
    raw.at[1, KNOWN] = aware.tz_convert("America/New_York")
    raw.at[2, EVENT] = raw.at[2, EVENT].isoformat() + "+00:00"
    valid, quarantine = validate_events(raw, DAY, flights)
    assert quarantine.empty
    assert str(valid[KNOWN].dtype) == "datetime64[ns]"
    assert (valid[KNOWN] - valid[EVENT] == pd.Timedelta(hours=3)).iloc[:2].all()


def test_an_unparseable_event_time_does_not_judge_its_label_time(flights, day) -> None:
    raw = day.head(2).astype({EVENT: object})
    raw.at[0, EVENT] = "soon"
    _, quarantine = validate_events(raw, DAY, flights)
    assert list(quarantine["reason"]) == [f"{EVENT}: unparseable"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.integers(-3 * 24 * 60, 3 * 24 * 60), min_size=1, max_size=12
    )  # minutes after the event
)
def test_a_label_time_passes_exactly_inside_its_window(flights, day, minutes) -> None:
    offsets = {i: pd.Timedelta(minutes=m) for i, m in enumerate(minutes)}
    raw = _with_known_at(day.head(len(minutes)), offsets)
    valid, quarantine = validate_events(raw, DAY, flights)  # runs the pandera check too
    expected = [
        BEFORE if m <= 0 else LATE for m in minutes if not 0 < m <= WITHIN / pd.Timedelta("1min")
    ]
    assert list(quarantine["reason"]) == expected
    assert len(valid) == len(minutes) - len(expected)
    assert ((valid[KNOWN] > valid[EVENT]) & (valid[KNOWN] <= valid[EVENT] + WITHIN)).all()


def test_the_pandera_schema_refuses_a_label_time_outside_its_window(flights, day) -> None:
    valid, _ = validate_events(day.head(3), DAY, flights)
    schema = event_schema(DAY.isoformat(), flights)
    schema.validate(valid)
    broken = valid.copy()
    broken.loc[1, KNOWN] = broken.loc[1, EVENT]
    with pytest.raises(Exception, match=KNOWN):
        schema.validate(broken)


# --- side tables ----------------------------------------------------------------------------

SIDE_REASONS = [
    "origin: null",
    "time_hour: null",
    "time_hour: unparseable",
    "time_hour: outside partition day",
    "temp: unparseable",
    "wind_speed: unparseable",
    "precip: unparseable",
    "visib: unparseable",
    "origin, time_hour: duplicate",
]


def test_side_table_reasons_are_derived_from_its_declaration(flights) -> None:
    assert side_table_reasons(flights, "weather") == SIDE_REASONS


def test_a_clean_weather_day_passes_in_its_dtypes(flights, weather) -> None:
    valid, quarantine = validate_side_rows(weather, DAY, "weather", flights)
    assert quarantine.empty and len(valid) == len(weather) == 72
    assert {c: str(t) for c, t in valid.dtypes.items()} == {
        "origin": "string",
        "time_hour": "datetime64[ns]",
        "temp": "float64",
        "wind_speed": "float64",
        "precip": "float64",
        "visib": "float64",
    }
    pd.testing.assert_frame_equal(valid, weather, check_dtype=False)


SIDE_CORRUPTIONS = {
    "no key": ("origin", None, "origin: null"),
    "no time": ("time_hour", None, "time_hour: null"),
    "bad time": ("time_hour", "noon", "time_hour: unparseable"),
    "other day": ("time_hour", TS("2013-07-05 01:00"), "time_hour: outside partition day"),
    "bad value": ("temp", "warm", "temp: unparseable"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(SIDE_CORRUPTIONS))
def test_each_bad_side_row_is_quarantined_with_its_reason(flights, weather, kind) -> None:
    col, value, reason = SIDE_CORRUPTIONS[kind]
    raw = weather.astype(object)
    raw.iat[4, raw.columns.get_loc(col)] = value
    valid, quarantine = validate_side_rows(raw, DAY, "weather", flights)
    assert len(valid) == len(weather) - 1
    assert list(quarantine["reason"]) == [reason]
    assert quarantine["partition_date"].iloc[0] == DAY.isoformat()


def test_a_missing_value_is_kept_and_a_repeated_hour_is_not(flights, weather) -> None:
    raw = weather.copy()
    raw.loc[2, "visib"] = np.nan
    raw.loc[5, "time_hour"] = raw.loc[2, "time_hour"]  # a second row for one airport-hour?
    raw.loc[5, "origin"] = raw.loc[2, "origin"]
    valid, quarantine = validate_side_rows(raw, DAY, "weather", flights)
    assert np.isnan(valid.loc[2, "visib"])  # allowed: the join falls back to its default
    assert list(quarantine["reason"]) == ["origin, time_hour: duplicate"]
    assert reason_counts(quarantine) == {"origin, time_hour: duplicate": 1}


def test_a_bad_first_copy_does_not_cost_the_good_second(flights, weather) -> None:
    raw = weather.astype(object)
    raw.at[5, "time_hour"] = raw.at[2, "time_hour"]
    raw.at[5, "origin"] = raw.at[2, "origin"]
    raw.at[2, "temp"] = "warm"
    valid, quarantine = validate_side_rows(raw, DAY, "weather", flights)
    assert list(quarantine["reason"]) == ["temp: unparseable"]
    assert len(valid) == len(weather) - 1


def test_side_rows_need_their_columns_and_a_declared_table(flights, weather) -> None:
    with pytest.raises(MissingColumnError, match="side table weather: missing .* visib"):
        validate_side_rows(weather.drop(columns="visib"), DAY, "weather", flights)
    with pytest.raises(ValueError, match="no side table 'metar' \\(declared: weather\\)"):
        validate_side_rows(weather, DAY, "metar", flights)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.integers(0, 71),
        st.sampled_from([*SIDE_CORRUPTIONS, "missing value", "repeat of row 0"]),
        max_size=20,
    )
)
def test_no_side_row_is_lost_and_every_kept_one_is_clean(flights, weather, broken) -> None:
    raw = weather.astype(object)
    for i, kind in broken.items():
        if kind == "missing value":
            raw.iat[i, raw.columns.get_loc("precip")] = None
        elif kind == "repeat of row 0":
            raw.iloc[i, :2] = raw.iloc[0, :2].to_numpy()
        else:
            col, value, _ = SIDE_CORRUPTIONS[kind]
            raw.iat[i, raw.columns.get_loc(col)] = value
    valid, quarantine = validate_side_rows(raw, DAY, "weather", flights)
    assert len(valid) + len(quarantine) == len(raw)
    assert not valid.duplicated(["origin", "time_hour"]).any()
    assert valid["origin"].notna().all() and valid["time_hour"].notna().all()
    assert set(reason_counts(quarantine)) <= set(SIDE_REASONS)
    wrecked = {i for i, kind in broken.items() if kind in SIDE_CORRUPTIONS}
    assert len(quarantine) >= len(wrecked)
