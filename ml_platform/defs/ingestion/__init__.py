"""Dagster definitions for the ingestion stage (raw -> validated + quarantine)."""

import dagster as dg

from ml_platform.defs.context import StageContext


def build(ctx: StageContext) -> dg.Definitions:
    """The ingestion assets of ``ctx.use_case``."""
    from ml_platform.defs.ingestion.assets import build_ingestion_assets

    return dg.Definitions(assets=build_ingestion_assets(ctx))
