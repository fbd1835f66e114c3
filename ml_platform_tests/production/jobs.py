"""The real ingestion assets as a small job (raw -> validated + quarantine), for tests that
need genuine Dagster runs without the dbt and training stages."""

from __future__ import annotations

import dagster as dg

JOB = "ingest_days"
TABLES = ("raw_transactions", "validated_transactions", "quarantined_transactions")


def ingestion_defs() -> dg.Definitions:
    from ml_platform.defs.ingestion.assets import raw_transactions, validate_transactions_assets
    from ml_platform.defs.resources import build_resources

    job = dg.define_asset_job(JOB, selection=dg.AssetSelection.groups("ingestion"))
    return dg.Definitions(
        assets=[raw_transactions, validate_transactions_assets],
        jobs=[job],
        resources=build_resources(),
        executor=dg.in_process_executor,
    )
