"""The daily partitioning shared by every date-based asset."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from ml_platform.settings import get_settings


def build_daily_partitions() -> dg.DailyPartitionsDefinition:
    s = get_settings()
    return dg.DailyPartitionsDefinition(
        start_date=s.start_date.isoformat(),
        end_date=(s.end_date + timedelta(days=1)).isoformat(),  # exclusive
    )


daily_partitions = build_daily_partitions()


def lookback_mapping(days: int) -> dg.TimeWindowPartitionMapping:
    """Read ``days`` earlier partitions as well as the current one (feature windows)."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-days, allow_nonexistent_upstream_partitions=True
    )
