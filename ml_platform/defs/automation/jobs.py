"""Asset jobs. Partitioned jobs run a partition range as one single-run backfill."""

from __future__ import annotations

import dagster as dg

from ml_platform.defs.partitions import daily_partitions

#: raw -> validated (+ quarantine) -> dbt warehouse, over daily partitions.
spine_job = dg.define_asset_job(
    name="spine_job",
    selection=dg.AssetSelection.groups("ingestion", "warehouse"),
    partitions_def=daily_partitions,
    description="Ingest, validate and load the warehouse for a range of days.",
)

jobs = [spine_job]
