"""Dagster definitions for the ingestion stage (raw -> validated + quarantine)."""

import dagster as dg

from ml_platform.defs.ingestion.assets import raw_transactions, validate_transactions_assets

defs = dg.Definitions(assets=[raw_transactions, validate_transactions_assets])
