"""Dagster definitions for the automation stage: jobs, the daily schedule, the sensors."""

import dagster as dg

from ml_platform.defs.context import StageContext


def build(ctx: StageContext) -> dg.Definitions:
    """The spine and daily jobs, the daily schedule and the sensors of ``ctx.use_case``."""
    from ml_platform.defs.automation.schedules import build_jobs, build_schedules
    from ml_platform.defs.automation.sensors import build_sensors

    return dg.Definitions(
        jobs=build_jobs(ctx), schedules=build_schedules(ctx), sensors=build_sensors(ctx)
    )
