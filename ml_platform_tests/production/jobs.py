"""The real ingestion assets as a small job (raw -> validated + quarantine), for tests that
need genuine Dagster runs without the dbt and training stages."""

from __future__ import annotations

import dagster as dg

JOB = "ingest_days"
TABLES = ("raw_transactions", "validated_transactions", "quarantined_transactions")


def ingestion_defs() -> dg.Definitions:
    """Fraud's ingestion stage, built for the current settings, with a job of its own."""
    from ml_platform.defs import build_definitions, names
    from ml_platform.defs.context import fraud_context

    ctx = fraud_context()
    job = dg.define_asset_job(JOB, selection=dg.AssetSelection.groups(ctx.name(names.INGESTION)))
    return dg.Definitions.merge(
        build_definitions([ctx.use_case.name], settings=ctx.settings, stages=(names.INGESTION,)),
        dg.Definitions(jobs=[job]),
    )
