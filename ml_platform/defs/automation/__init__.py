"""Dagster definitions for the automation stage: jobs, the daily schedule, the sensors."""

import dagster as dg

from ml_platform.defs.context import StageContext, flagship_only


def unsupported(ctx: StageContext) -> str | None:
    """The daily job spans the warehouse and monitoring; the retraining sensor reads
    monitoring's drift and performance: both exist for the flagship only."""
    return flagship_only(ctx, "the warehouse and monitoring stages' assets")


def build(ctx: StageContext) -> dg.Definitions:
    """The spine and daily jobs, the daily schedule and the sensors of ``ctx.use_case``."""
    from ml_platform.defs.automation.schedules import build_jobs, build_schedules
    from ml_platform.defs.automation.sensors import build_sensors

    return dg.Definitions(
        jobs=build_jobs(ctx), schedules=build_schedules(ctx), sensors=build_sensors(ctx)
    )
