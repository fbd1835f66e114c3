"""The daily partitioning shared by every date-based asset of a use case."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from ml_platform.settings import Settings


def build_daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per day of ``settings.start_date..end_date`` (inclusive)."""
    return dg.DailyPartitionsDefinition(
        start_date=settings.start_date.isoformat(),
        end_date=(settings.end_date + timedelta(days=1)).isoformat(),  # exclusive
    )


def lookback_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """Read ``days`` earlier partitions as well as the current one (feature windows)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-days, allow_nonexistent_upstream_partitions=True
    )
