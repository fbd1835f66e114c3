"""The daily partitioning shared by every date-based asset of a use case."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Protocol

import dagster as dg


class DateRange(Protocol):
    start_date: date
    end_date: date


def build_daily_partitions(settings: DateRange) -> dg.DailyPartitionsDefinition:
    """One partition per day of ``settings.start_date..end_date`` (inclusive): the platform
    settings or a use case's (:class:`ml_platform.defs.context.RunSettings`)."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.start_date.isoformat(),
        end_date=(settings.end_date + timedelta(days=1)).isoformat(),  # exclusive
    )


def lookback_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """Read ``days`` earlier partitions as well as the current one (feature windows)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-days, allow_nonexistent_upstream_partitions=True
    )
