"""The flights source's cost: the first day (reads the package's files), then every day of
2013 (slices), with its weather, and the validation of a day; prints one JSON object.

Usage: ``uv run python benchmarks/flights_source.py``.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

from ml_platform.data.sources import read_events_day, read_side_day
from ml_platform.data.validation import validate_events
from ml_platform.use_cases import get_use_case, resolve_settings


def main() -> dict[str, object]:
    uc = get_use_case("flights")
    settings = resolve_settings(uc)
    first = settings.start_date
    t0 = time.perf_counter()
    read_events_day(uc, first, settings)
    t1 = time.perf_counter()
    read_side_day(uc, "weather", first, settings)
    t2 = time.perf_counter()
    days = [first + timedelta(days=i) for i in range((settings.end_date - first).days + 1)]
    rows = weather = 0
    t3 = time.perf_counter()
    for day in days:
        rows += len(read_events_day(uc, day, settings))
        weather += len(read_side_day(uc, "weather", day, settings))
    t4 = time.perf_counter()
    busiest = date(2013, 8, 8)
    events = read_events_day(uc, busiest, settings)
    validate_events(events, busiest, uc)  # the contract's first use: pandera's import
    t5 = time.perf_counter()
    validate_events(events, busiest, uc)
    t6 = time.perf_counter()
    return {
        "first_day_seconds": round(t1 - t0, 3),
        "first_weather_day_seconds": round(t2 - t1, 3),
        "days": len(days),
        "rows": rows,
        "weather_rows": weather,
        "mean_day_ms": round((t4 - t3) / len(days) * 1000, 3),
        "validate_day_ms": round((t6 - t5) * 1000, 1),
        "validated_rows": len(events),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
