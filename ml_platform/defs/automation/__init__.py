"""Dagster definitions for the automation stage: jobs, the daily schedule, the sensors."""

import dagster as dg

from ml_platform.defs import names
from ml_platform.defs.context import StageContext

#: Stages the automation stage needs: the daily job spans them, the retraining sensor reads
#: monitoring's drift and performance tables.
NEEDS = (names.WAREHOUSE, names.MONITORING)


def unsupported(ctx: StageContext) -> str | None:
    """The reason of the first stage it needs that is not built for ``ctx.use_case`` (so
    automation turns on by itself once they are), or None."""
    from ml_platform.defs import unsupported_reason

    for stage in NEEDS:
        reason = unsupported_reason(stage, ctx)
        if reason is not None:
            return f"needs the {stage} stage, left out: {reason}"
    return None


def build(ctx: StageContext) -> dg.Definitions:
    """The spine and daily jobs, the daily schedule and the sensors of ``ctx.use_case``."""
    from ml_platform.defs.automation.schedules import build_jobs, build_schedules
    from ml_platform.defs.automation.sensors import build_sensors

    return dg.Definitions(
        jobs=build_jobs(ctx), schedules=build_schedules(ctx), sensors=build_sensors(ctx)
    )
