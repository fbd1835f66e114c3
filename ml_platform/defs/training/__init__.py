"""Dagster definitions for the training stage: training set, candidate and champion model.

Jobs (prefixed with the use case's name): ``training_job`` (train, register, gate),
``feature_pipeline_job`` (ingestion + features over a partition range; what
``ml-platform backtest`` materializes) and ``training_features_job`` (features and the online
store, once ingestion has run: the demo uses it, so the API starts with the history of the
whole range).
"""

import dagster as dg

from ml_platform.defs import names
from ml_platform.defs.context import StageContext


def build(ctx: StageContext) -> dg.Definitions:
    """The training assets and jobs of ``ctx.use_case``."""
    from ml_platform.defs.training.assets import build_training_assets

    training_job = dg.define_asset_job(
        name=ctx.name(names.TRAINING_JOB),
        selection=dg.AssetSelection.groups(ctx.name(names.TRAINING)),
        tags=ctx.tags(),
        description="Build the training set, train + register the challenger, run the "
        "promotion gate.",
    )
    feature_pipeline_job = dg.define_asset_job(
        name=ctx.name(names.FEATURE_PIPELINE_JOB),
        selection=dg.AssetSelection.groups(ctx.name(names.INGESTION))
        | dg.AssetSelection.assets(ctx.key(names.EVENT_FEATURES)),
        tags=ctx.tags(),
        description="Ingest, validate and compute features for a range of days (used by backtest).",
    )
    training_features_job = dg.define_asset_job(
        name=ctx.name(names.TRAINING_FEATURES_JOB),
        selection=dg.AssetSelection.assets(
            ctx.key(names.EVENT_FEATURES), ctx.key(names.ONLINE_FEATURE_STORE)
        ),
        tags=ctx.tags(),
        description=(
            "Features for a range of days whose events are validated, and the online store "
            "loaded as of the range's end (demo, retraining)."
        ),
    )
    return dg.Definitions(
        assets=build_training_assets(ctx),
        jobs=[training_job, feature_pipeline_job, training_features_job],
    )
