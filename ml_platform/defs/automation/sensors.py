"""Sensors: start runs when something happened (new data file, drift, performance drop).

* ``<name>_new_data_sensor`` watches the use case's external-files source (its source
  folder): a new or changed daily file ``YYYY-MM-DD.parquet|csv`` inside the partition range
  starts the daily pipeline for that partition (run key = file + mtime, so a file starts one
  run).
* ``<name>_retraining_sensor`` gathers the monitoring state (latest drift share, the
  champion's trailing labeled primary metric - fraud: AP, flights: MAE - vs the one recorded
  on its validation window, labeled days newer than its training data, runs of the training
  job in progress) from the use case's own lake tables, registered model and jobs, and
  applies :func:`ml_platform.monitoring.policy.decide` in the metric's direction - the same
  function the retraining-policy backtest replays. Every evaluation logs its
  decision and reason; a run request carries the reason as tags; the cursor remembers the
  last triggered data day (cooldown).

Both are RUNNING by default, so ``make dev`` (UI + daemon) runs them. :func:`build_sensors`
builds them for one use case: they watch its lake tables, its registered model and its jobs.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.defs import names
from ml_platform.defs.context import StageContext
from ml_platform.defs.metadata import finite_or_none

if TYPE_CHECKING:
    from ml_platform.monitoring.policy import MonitoringState, PolicyConfig

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


def policy_config(ctx: StageContext) -> PolicyConfig:
    """The retraining policy of ``ctx.use_case``: its thresholds and its primary metric."""
    from ml_platform.monitoring.policy import PolicyConfig
    from ml_platform.training.metrics import task_metrics

    return PolicyConfig.from_settings(ctx.own, task_metrics(ctx.use_case).primary)


def latest_drift(ctx: StageContext) -> tuple[float | None, str | None]:
    """The drifted-feature share of the newest ``drift_report`` partition of ``ctx.use_case``
    (its lake table: one row per column, ``kind`` feature or prediction), and its day."""
    from ml_platform.data import lake

    table = ctx.table(names.DRIFT_REPORT)
    days = lake.list_partitions(ctx.settings.lake_dir, table)
    if not days:
        return None, None
    frame = lake.read_partitions(ctx.settings.lake_dir, table, days[-1:])
    drifted = frame.loc[frame["kind"] == "feature", "drifted"]
    return (float(drifted.mean()) if len(drifted) else None), days[-1]


def recent_performance(ctx: StageContext, version: str) -> tuple[float | None, str | None]:
    """The champion ``version``'s primary metric pooled over the trailing labeled days of
    its batch predictions (the ``model_performance`` table's ``trailing_<metric>`` column,
    over a full window only), and the day it ends; (None, None) when not measured yet."""
    import pandas as pd

    from ml_platform.data import lake
    from ml_platform.monitoring import performance as perf

    path = ctx.settings.lake_dir / ctx.table(names.MODEL_PERFORMANCE) / lake.FILE_NAME
    column = perf.trailing_column(ctx.use_case)
    if not path.exists():
        return None, None
    table = pd.read_parquet(path)
    if column not in table.columns:
        return None, None
    mine = table[
        (table[perf.MODEL_VERSION].astype(str) == version) & (table[perf.SOURCE] == "batch")
    ].sort_values(perf.DAY)
    full = mine[mine["trailing_days"] >= ctx.own.performance_window_days]
    if not len(full):
        return None, None
    return finite_or_none(full[column].iloc[-1]), str(full[perf.DAY].iloc[-1])


def gather_state(
    ctx: StageContext, instance: dg.DagsterInstance, last_retrain_day: date | None
) -> MonitoringState:
    """The policy's MonitoringState of ``ctx.use_case`` from the lake, the registry and the
    instance."""
    from ml_platform.monitoring.policy import MonitoringState
    from ml_platform.training.datasets import matured_until
    from ml_platform.training.metrics import task_metrics

    run = ctx.run
    feature_days = _lake_days(ctx.settings.lake_dir, ctx.table(names.EVENT_FEATURES))
    as_of = date.fromisoformat(feature_days[-1]) if feature_days else run.start_date
    running = bool(training_in_progress(instance, ctx.name(names.TRAINING_JOB)))
    info = _champion_info(ctx.model_name)
    drift_share, drift_day = latest_drift(ctx)
    extra = {"drift_day": drift_day}
    labeled_until = matured_until(as_of, run.label_delay_days)
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
    primary = task_metrics(ctx.use_case).primary.name
    reference = finite_or_none(info.tags.get(f"valid_{primary}"))
    recent, performance_day = recent_performance(ctx, str(info.version))
    if performance_day is not None:
        extra["performance_day"] = performance_day
    extra["champion_version"] = str(info.version)
    return MonitoringState(
        as_of=as_of,
        has_champion=True,
        retraining_in_progress=running,
        drift_share=drift_share,
        recent_metric=recent,
        reference_metric=reference,
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


def watched_folder(ctx: StageContext) -> tuple[str, Path | None]:
    """What the new-data sensor of ``ctx.use_case`` watches: its source kind and, for daily
    files, their folder (the flagship: ``ML_PLATFORM_SOURCE[_DIR]``; any other use case: its
    declared source and ``<PREFIX>SOURCE_DIR``)."""
    if ctx.is_flagship:
        return ctx.settings.source, ctx.settings.source_dir
    return ctx.use_case.spec.source.default, ctx.resolved.source_dir


def build_sensors(ctx: StageContext) -> list[dg.SensorDefinition]:
    """The retraining sensor and the new-data sensor of ``ctx.use_case``."""
    from ml_platform.training.metrics import task_metrics

    s = ctx.settings
    training_job = ctx.name(names.TRAINING_JOB)
    daily_job = ctx.name(names.DAILY_PIPELINE_JOB)
    partitions = ctx.partitions
    prefix = "ML_PLATFORM_" if ctx.is_flagship else ctx.use_case.env_prefix
    metric = task_metrics(ctx.use_case).primary.short

    @dg.sensor(
        name=ctx.name(names.RETRAINING_SENSOR),
        job_name=training_job,
        minimum_interval_seconds=s.sensor_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Starts {training_job} (train + register + promotion gate) when the "
            f"drifted-feature share exceeds {prefix}DRIFT_SHARE_THRESHOLD, when the "
            f"champion's trailing labeled {metric} is worse than its validation {metric} by "
            f"more than {prefix}RETRAIN_PERFORMANCE_MARGIN, or when "
            f"{prefix}RETRAIN_MIN_NEW_LABELED_DAYS labeled days are newer than its training "
            "data; never while a training run is queued or running; at most once per "
            f"{prefix}RETRAIN_MIN_DAYS_BETWEEN data days. Each decision is logged with its "
            "reason."
        ),
    )
    def retraining_sensor(context: dg.SensorEvaluationContext):
        from ml_platform.monitoring.policy import decide

        cursor = json.loads(context.cursor) if context.cursor else {}
        last = cursor.get("last_retrain_day")
        state = gather_state(ctx, context.instance, date.fromisoformat(last) if last else None)
        decision = decide(state, policy_config(ctx))
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
            "External-files source: a new or changed daily file YYYY-MM-DD.parquet|csv in "
            f"{prefix}SOURCE_DIR starts {daily_job} for that partition. Skips, saying why, "
            "when the source is not daily files."
        ),
    )
    def new_data_sensor(context: dg.SensorEvaluationContext):
        kind, folder = watched_folder(ctx)
        if kind != "files" or folder is None:
            return dg.SkipReason(f"source is {kind!r}: no external files to watch")
        folder = Path(folder)
        if not folder.exists():
            return dg.SkipReason(f"source_dir {folder} does not exist yet")
        seen: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
        valid_keys = set(partitions.get_partition_keys())
        requests, outside = [], []
        for path in sorted(folder.iterdir()):
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
