"""The daily schedule: every day, the whole partitioned pipeline for the day before.

``<name>_daily_pipeline_job`` covers every daily-partitioned stage - ingestion, the dbt
warehouse (prediction outcomes included), features and the online store, batch predictions,
the online-prediction export, drift and skew - then the unpartitioned performance and summary
assets. The schedule runs it for yesterday's partition shortly after midnight (the
partition must exist: outside the configured date range a tick is skipped). The new-data
sensor starts the same job for a file that arrives. ``<name>_spine_job`` is ingestion and
the warehouse only.
"""

from datetime import timedelta

import dagster as dg

from ml_platform.defs import names
from ml_platform.defs.context import StageContext

#: Stages whose every asset runs daily (plus the batch predictions of the serving stage).
DAILY_STAGES = (names.INGESTION, names.WAREHOUSE, names.FEATURES, names.MONITORING)


def build_jobs(ctx: StageContext) -> list:
    """The spine job and the daily pipeline job of ``ctx.use_case``."""
    spine_job = dg.define_asset_job(
        name=ctx.name(names.SPINE_JOB),
        selection=dg.AssetSelection.groups(ctx.name(names.INGESTION), ctx.name(names.WAREHOUSE)),
        partitions_def=ctx.partitions,
        tags=ctx.tags(),
        description="Ingest, validate and load the warehouse for a range of days.",
    )
    daily_pipeline_job = dg.define_asset_job(
        name=ctx.name(names.DAILY_PIPELINE_JOB),
        selection=(
            dg.AssetSelection.groups(*(ctx.name(stage) for stage in DAILY_STAGES))
            | dg.AssetSelection.assets(ctx.key(names.BATCH_PREDICTIONS))
        ),
        partitions_def=ctx.partitions,
        tags=ctx.tags(),
        description=(
            "One day end to end: ingest, validate, warehouse, features, online store, batch "
            "predictions, then drift, skew, labeled performance and the monitoring summary."
        ),
    )
    return [spine_job, daily_pipeline_job]


def build_schedules(ctx: StageContext) -> list[dg.ScheduleDefinition]:
    """The daily schedule of ``ctx.use_case`` (its daily pipeline job, yesterday's day)."""
    job_name = ctx.name(names.DAILY_PIPELINE_JOB)
    partitions = ctx.partitions
    prefix = "ML_PLATFORM_" if ctx.is_flagship else ctx.use_case.env_prefix

    @dg.schedule(
        name=ctx.name(names.DAILY_PIPELINE_SCHEDULE),
        job_name=job_name,
        cron_schedule="30 0 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Runs {job_name} at 00:30 UTC for the day that just ended; skips, "
        "saying why, when that day is outside the configured partition range.",
    )
    def daily_schedule(context: dg.ScheduleEvaluationContext):
        day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        keys = partitions.get_partition_keys()
        if day not in keys:
            return dg.SkipReason(
                f"{day} is outside the partition range {keys[0]}..{keys[-1]} "
                f"({prefix}START_DATE / {prefix}END_DATE)"
            )
        return dg.RunRequest(run_key=day, partition_key=day)

    return [daily_schedule]
