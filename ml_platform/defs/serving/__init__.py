"""Dagster definitions for the serving stage: batch predictions, edge package, their jobs."""

import dagster as dg

from ml_platform.defs import names
from ml_platform.defs.context import StageContext


def build(ctx: StageContext) -> dg.Definitions:
    """The serving assets of ``ctx.use_case``, its batch-scoring job and its edge job."""
    from ml_platform.defs.serving.assets import build_serving_assets

    batch_scoring_job = dg.define_asset_job(
        name=ctx.name(names.BATCH_SCORING_JOB),
        selection=dg.AssetSelection.assets(ctx.key(names.BATCH_PREDICTIONS)),
        partitions_def=ctx.partitions,
        tags=ctx.tags(),
        description="Score every event of a range of days with the champion (one single-run "
        "backfill).",
    )
    edge_job = dg.define_asset_job(
        name=ctx.name(names.EDGE_JOB),
        selection=dg.AssetSelection.assets(ctx.key(names.EDGE_PACKAGE)),
        tags=ctx.tags(),
        description="Export the champion as a compressed ONNX edge package with a parity report.",
    )
    return dg.Definitions(assets=build_serving_assets(ctx), jobs=[batch_scoring_job, edge_job])
