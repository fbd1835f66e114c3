"""Dagster definitions for the serving stage: batch_predictions, edge_package and their jobs."""

import dagster as dg

from ml_platform.defs.partitions import daily_partitions
from ml_platform.defs.serving.assets import batch_predictions, edge_package

#: Score a range of days with the champion (one single-run backfill).
batch_scoring_job = dg.define_asset_job(
    name="batch_scoring_job",
    selection=dg.AssetSelection.assets(batch_predictions),
    partitions_def=daily_partitions,
    description="Score every transaction of a range of days with the champion.",
)

#: Export the champion as an edge package (unpartitioned).
edge_job = dg.define_asset_job(
    name="edge_job",
    selection=dg.AssetSelection.assets(edge_package),
    description="Export the champion as a compressed ONNX edge package with a parity report.",
)

defs = dg.Definitions(assets=[batch_predictions, edge_package], jobs=[batch_scoring_job, edge_job])
