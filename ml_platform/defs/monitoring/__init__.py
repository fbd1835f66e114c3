"""Dagster definitions for the monitoring stage (group "<name>_monitoring").

Drift, serving skew, labeled performance and the summary of one use case; its dbt models
``fct_prediction_outcomes`` / ``mart_model_performance_daily`` (asset keys
``<name>_fct_prediction_outcomes`` ...) are generated with the warehouse's. Sensors and the
daily schedule are in ``ml_platform/defs/automation``.
"""

import dagster as dg

from ml_platform.defs import names
from ml_platform.defs.context import StageContext


def build(ctx: StageContext) -> dg.Definitions:
    """The monitoring assets of ``ctx.use_case`` and its two monitoring jobs."""
    from ml_platform.defs.monitoring.assets import build_monitoring_assets

    outcomes = ctx.key(names.DBT_PREDICTION_OUTCOMES)
    mart = ctx.key(names.DBT_PERFORMANCE_MART)
    monitoring_job = dg.define_asset_job(
        name=ctx.name(names.MONITORING_JOB),
        selection=dg.AssetSelection.groups(ctx.name(names.MONITORING))
        | dg.AssetSelection.assets(outcomes, mart),
        partitions_def=ctx.partitions,
        tags=ctx.tags(),
        description="Export online predictions, drift + skew per day, labeled performance, "
        "summary (over a partition range; the serving and warehouse assets it reads must exist).",
    )
    labeled_performance_job = dg.define_asset_job(
        name=ctx.name(names.LABELED_PERFORMANCE_JOB),
        selection=dg.AssetSelection.assets(outcomes, mart, ctx.key(names.MODEL_PERFORMANCE)),
        partitions_def=ctx.partitions,
        tags=ctx.tags(),
        description="dbt prediction outcomes + performance mart over a range, then "
        "model_performance.",
    )
    return dg.Definitions(
        assets=build_monitoring_assets(ctx), jobs=[monitoring_job, labeled_performance_job]
    )
