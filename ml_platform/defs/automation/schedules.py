"""The daily schedule: every day, the whole partitioned pipeline for the day before.

``daily_pipeline_job`` covers every daily-partitioned stage - ingestion, the dbt warehouse
(prediction outcomes included), features and the online store, batch predictions, the
online-prediction export, drift and skew - then the unpartitioned performance and summary
assets. The schedule runs it for yesterday's partition shortly after midnight (the
partition must exist: outside the configured date range a tick is skipped). The new-data
sensor starts the same job for a file that arrives.
"""

from datetime import timedelta

import dagster as dg

from ml_platform.defs.partitions import daily_partitions

DAILY_GROUPS = ("ingestion", "warehouse", "features", "monitoring")

daily_pipeline_job = dg.define_asset_job(
    name="daily_pipeline_job",
    selection=(
        dg.AssetSelection.groups(*DAILY_GROUPS) | dg.AssetSelection.assets("batch_predictions")
    ),
    partitions_def=daily_partitions,
    description=(
        "One day end to end: ingest, validate, warehouse, features, online store, batch "
        "predictions, then drift, skew, labeled performance and the monitoring summary."
    ),
)


@dg.schedule(
    name="daily_pipeline_schedule",
    job=daily_pipeline_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Runs daily_pipeline_job at 00:30 UTC for the day that just ended; skips, "
    "saying why, when that day is outside the configured partition range.",
)
def daily_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    keys = daily_partitions.get_partition_keys()
    if day not in keys:
        return dg.SkipReason(
            f"{day} is outside the partition range {keys[0]}..{keys[-1]} "
            "(ML_PLATFORM_START_DATE / ML_PLATFORM_END_DATE)"
        )
    return dg.RunRequest(run_key=day, partition_key=day)


jobs = [daily_pipeline_job]
schedules = [daily_schedule]
