"""Sensors: start runs when something happened (new data file, drift, performance drop).

* ``<name>_new_data_sensor`` watches the external-files source (``settings.source_dir``): a new or
  changed daily file ``YYYY-MM-DD.parquet|csv`` inside the partition range starts the daily
  pipeline for that partition (run key = file + mtime, so a file starts one run).
* ``<name>_retraining_sensor`` gathers the monitoring state (latest drift share, trailing labeled
  AP of the champion vs its validation AP, labeled days newer than its training data, runs
  of the training job in progress) and applies :func:`ml_platform.monitoring.policy.decide`
  - the same function the retraining-policy backtest replays. Every evaluation logs its
  decision and reason; a run request carries the reason as tags; the cursor remembers the
  last triggered data day (cooldown).

Both are RUNNING by default, so ``make dev`` (UI + daemon) runs them. :func:`build_sensors`
builds them for one use case: they watch its lake tables, its registered model and its jobs.
"""

import json
import re
from datetime import date

import dagster as dg

from ml_platform.defs import names
from ml_platform.defs.context import StageContext
from ml_platform.defs.metadata import finite_or_none

_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def training_in_progress(instance: dg.DagsterInstance, job_name: str) -> list[str]:
    """Run ids of the training job ``job_name`` that are queued or running."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=_ACTIVE), limit=10)
    return [r.dagster_run.run_id for r in records]


def gather_state(ctx: StageContext, instance: dg.DagsterInstance, last_retrain_day: date | None):
    """The policy's MonitoringState of ``ctx.use_case`` from the lake, the registry and the
    instance."""
    from ml_platform.monitoring import daily
    from ml_platform.monitoring.policy import MonitoringState
    from ml_platform.monitoring.summary import read_performance
    from ml_platform.training.datasets import matured_until

    s = ctx.settings
    feature_days = _lake_days(s.lake_dir, ctx.table(names.EVENT_FEATURES))
    as_of = date.fromisoformat(feature_days[-1]) if feature_days else s.start_date
    running = bool(training_in_progress(instance, ctx.name(names.TRAINING_JOB)))
    info = _champion_info(ctx.model_name)
    drift = daily.read_drift_history(s)
    drift_share = float(drift["drift_share"].iloc[-1]) if len(drift) else None
    extra = {"drift_day": str(drift["day"].iloc[-1]) if len(drift) else None}
    labeled_until = matured_until(as_of, s.label_delay_days)
    if info is None:
        labeled = [d for d in feature_days if date.fromisoformat(d) <= labeled_until]
        return MonitoringState(
            as_of=as_of,
            has_champion=False,
            retraining_in_progress=running,
            new_labeled_days=len(labeled),
            last_retrain_day=last_retrain_day,
            extra=extra,
        )
    valid_end = _window_end(info.tags.get("valid_window", ""))
    new_days = max(0, (labeled_until - valid_end).days) if valid_end else 0
    reference = finite_or_none(info.tags.get("valid_average_precision"))
    recent = None
    perf = read_performance(s)
    if len(perf) and "trailing_average_precision" in perf.columns:
        mine = perf[
            (perf["model_version"].astype(str) == str(info.version)) & (perf["source"] == "batch")
        ].sort_values("tx_date")
        full = mine[mine["trailing_days"] >= s.performance_window_days]
        if len(full):
            recent = finite_or_none(full["trailing_average_precision"].iloc[-1])
            extra["performance_day"] = str(full["tx_date"].iloc[-1])
    extra["champion_version"] = str(info.version)
    return MonitoringState(
        as_of=as_of,
        has_champion=True,
        retraining_in_progress=running,
        drift_share=drift_share,
        recent_ap=recent,
        reference_ap=reference,
        new_labeled_days=new_days,
        last_retrain_day=last_retrain_day,
        extra=extra,
    )


def _champion_info(model_name: str):
    from ml_platform.training import registry

    try:
        return registry.get_model_info(registry.CHAMPION, model_name=model_name)
    except LookupError:
        return None


def _window_end(window: str) -> date | None:
    try:
        return date.fromisoformat(window.split("..")[1])
    except (IndexError, ValueError):
        return None


def _lake_days(lake_dir, table: str) -> list[str]:
    from ml_platform.data import lake

    return lake.list_partitions(lake_dir, table)


def build_sensors(ctx: StageContext) -> list[dg.SensorDefinition]:
    """The retraining sensor and the new-data sensor of ``ctx.use_case``."""
    s = ctx.settings
    training_job = ctx.name(names.TRAINING_JOB)
    daily_job = ctx.name(names.DAILY_PIPELINE_JOB)
    partitions = ctx.partitions

    @dg.sensor(
        name=ctx.name(names.RETRAINING_SENSOR),
        job_name=training_job,
        minimum_interval_seconds=s.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Starts {training_job} (train + register + promotion gate) when the "
            "drifted-feature share exceeds ML_PLATFORM_DRIFT_SHARE_THRESHOLD, when the "
            "champion's trailing labeled AP drops ML_PLATFORM_RETRAIN_PERFORMANCE_MARGIN below "
            "its validation AP, or when ML_PLATFORM_RETRAIN_MIN_NEW_LABELED_DAYS labeled days "
            "are newer than its training data; never while a training run is queued or "
            "running; at most once per ML_PLATFORM_RETRAIN_MIN_DAYS_BETWEEN data days. Each "
            "decision is logged with its reason."
        ),
    )
    def retraining_sensor(context: dg.SensorEvaluationContext):
        from ml_platform.monitoring.policy import PolicyConfig, decide

        cursor = json.loads(context.cursor) if context.cursor else {}
        last = cursor.get("last_retrain_day")
        state = gather_state(ctx, context.instance, date.fromisoformat(last) if last else None)
        decision = decide(state, PolicyConfig.from_settings(s))
        context.log.info(
            f"retraining decision: {'RUN' if decision.retrain else 'SKIP'} [{decision.trigger}] "
            f"{decision.reason}"
        )
        if not decision.retrain:
            return dg.SkipReason(f"[{decision.trigger}] {decision.reason}")
        day = state.as_of.isoformat()
        context.update_cursor(json.dumps({"last_retrain_day": day, "trigger": decision.trigger}))
        return dg.RunRequest(
            run_key=f"retrain-{day}-{decision.trigger}",
            tags={
                **ctx.tags(),
                "ml_platform/trigger": decision.trigger,
                "ml_platform/reason": decision.reason[:200],
                "ml_platform/as_of": day,
            },
        )

    @dg.sensor(
        name=ctx.name(names.NEW_DATA_SENSOR),
        job_name=daily_job,
        minimum_interval_seconds=s.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "External-files source (ML_PLATFORM_SOURCE=files): a new or changed daily file "
            "YYYY-MM-DD.parquet|csv in ML_PLATFORM_SOURCE_DIR starts "
            f"{daily_job} for that partition. Skips, saying why, with the simulator source."
        ),
    )
    def new_data_sensor(context: dg.SensorEvaluationContext):
        if s.source != "files" or s.source_dir is None:
            return dg.SkipReason(f"source is {s.source!r}: no external files to watch")
        if not s.source_dir.exists():
            return dg.SkipReason(f"source_dir {s.source_dir} does not exist yet")
        seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        valid_keys = set(partitions.get_partition_keys())
        requests, outside = [], []
        for path in sorted(s.source_dir.iterdir()):
            m = _FILE.match(path.name)
            if m is None:
                continue
            mtime = path.stat().st_mtime
            if seen.get(path.name) == mtime:
                continue
            day = m.group(1)
            if day not in valid_keys:
                outside.append(path.name)
                seen[path.name] = mtime
                continue
            requests.append(
                dg.RunRequest(
                    run_key=f"{path.name}:{mtime}",
                    partition_key=day,
                    tags={
                        **ctx.tags(),
                        "ml_platform/trigger": "new_file",
                        "ml_platform/file": str(path),
                    },
                )
            )
            seen[path.name] = mtime
        if outside:
            context.log.warning(f"files outside the partition range ignored: {outside[:5]}")
        context.update_cursor(json.dumps(seen, sort_keys=True))
        if not requests:
            return dg.SkipReason("no new or changed daily file")
        context.log.info(f"new data: starting {len(requests)} partition run(s)")
        return requests

    return [retraining_sensor, new_data_sensor]
