"""Dagster definitions for the features stage: event features and the online store."""

import dagster as dg

from ml_platform.defs.context import StageContext


def build(ctx: StageContext) -> dg.Definitions:
    """The feature assets of ``ctx.use_case``."""
    from ml_platform.defs.features.assets import build_feature_assets

    return dg.Definitions(assets=build_feature_assets(ctx))
