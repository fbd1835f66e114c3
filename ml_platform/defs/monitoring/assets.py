"""Monitoring assets: thin wrappers over ``ml_platform.monitoring`` (group "<name>_monitoring").

Daily: ``online_predictions`` (the API's log exported to the lake for dbt),
``drift_report`` (+ its drift-share check) and ``serving_skew`` (+ its mismatch check).
Whole history: ``model_performance`` (delayed labels, via the dbt models
``fct_prediction_outcomes`` / ``mart_model_performance_daily``) and ``monitoring_summary``.
Partitioned assets take a whole range in one run and record per-partition metadata, so the
key numbers plot over time in the UI. :func:`build_monitoring_assets` builds them for one
use case (every key, check and the group prefixed with its name): its feature columns, its
prediction log, its dbt models and its task's metrics, with the primary metric compared in
its own direction.
"""

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from ml_platform.defs import names
from ml_platform.defs.context import StageContext
from ml_platform.defs.metadata import finite_or_none
from ml_platform.monitoring.monitored import Monitored

if TYPE_CHECKING:
    from ml_platform.training.metrics import Metric
    from ml_platform.use_cases import UseCase

OWNERS = ["team:ml-platform"]


@dataclass(frozen=True)
class Limits:
    """The monitoring settings of a use case: the flagship's ``ML_PLATFORM_*`` ones, any
    other's from its folder (``<PREFIX>*`` overrides)."""

    drift_share_threshold: float
    skew_tolerance: float
    performance_window_days: int

    @classmethod
    def of(cls, ctx: StageContext) -> "Limits":
        own = ctx.own
        return cls(own.drift_share_threshold, own.skew_tolerance, own.performance_window_days)


def build_monitoring_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Online predictions, drift, skew (daily), labeled performance and the summary."""
    from ml_platform.monitoring.performance import trailing_column
    from ml_platform.use_cases.loader import engine_label_delay

    s = ctx.settings
    uc = ctx.use_case
    m = Monitored(uc)
    limits = Limits.of(ctx)
    delay = engine_label_delay(uc, s.label_delay_days)
    primary = m.primary
    trailing = trailing_column(uc)
    group = ctx.name(names.MONITORING)
    model_name = ctx.model_name
    drift_check = ctx.name(names.DRIFT_CHECK)
    skew_check = ctx.name(names.SKEW_CHECK)
    drift_key = ctx.key(names.DRIFT_REPORT)
    skew_key = ctx.key(names.SERVING_SKEW)
    dbt_models = [ctx.key(names.DBT_PERFORMANCE_MART), ctx.key(names.DBT_PREDICTION_OUTCOMES)]

    @dg.asset(
        group_name=group,
        owners=OWNERS,
        kinds={"sqlite", "parquet"},
        key=ctx.key(names.ONLINE_PREDICTIONS),
        metadata=ctx.metadata(names.ONLINE_PREDICTIONS),
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=(
            "The real-time API's answers (champion role of the prediction log, "
            "<data_dir>/serving/prediction_log.sqlite) for the events of the day, exported to "
            "the lake so dbt can join them with labels (source "
            "`monitoring.online_predictions`). Empty when the API answered nothing that day."
        ),
    )
    def online_predictions(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
        from ml_platform.monitoring import daily

        log = daily.read_log(s, use_case=uc)
        parts = {k: daily.online_for_day(s, k, log, uc) for k in context.partition_keys}
        for key, frame in parts.items():
            context.add_asset_metadata({"requests": len(frame)}, partition_key=key)
        return parts

    @dg.asset(
        group_name=group,
        owners=OWNERS,
        kinds={"evidently", "html"},
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        key=drift_key,
        metadata=ctx.metadata(names.DRIFT_REPORT),
        deps=[
            ctx.key(names.EVENT_FEATURES),
            ctx.key(names.BATCH_PREDICTIONS),
            ctx.key(names.CHAMPION_MODEL),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                drift_check,
                asset=drift_key,
                description="Warns when the share of drifted features exceeds the use case's "
                f"drift_share_threshold ({limits.drift_share_threshold}) on a day of the run.",
            )
        ],
        description=(
            "Evidently 0.7 data-drift report of the day's features against the champion's training "
            "window (read back from the lake and sampled), and of the champion's score "
            "distribution (prediction drift). HTML under the use case's reports/drift/, linked in "
            "the "
            "metadata with the drift share, drifted features and prediction-score drift; the "
            "stored table has one row per column (method, score, threshold, drifted)."
        ),
    )
    def drift_report(context: dg.AssetExecutionContext):
        from ml_platform.monitoring import daily

        cols = m.feature_columns
        try:
            model, info = daily.load_champion(model_name)
        except LookupError as exc:
            raise dg.Failure(
                f"drift_report: no champion to take the reference from ({exc})"
            ) from exc
        reference = daily.champion_reference(s, model, info, cols, uc)
        parts, worst = {}, (None, -1.0)
        for key in context.partition_keys:
            result = daily.drift_for_day(s, key, reference, cols, use_case=uc)
            parts[key] = daily.drift_frame(result, key)
            summ = result.summary()
            context.add_asset_metadata(
                {
                    "drift_share": summ["drift_share"],
                    "n_drifted_features": summ["n_drifted_features"],
                    "drifted_features": ", ".join(summ["drifted_features"]) or "-",
                    "prediction_drift_score": summ["prediction_drift_score"],
                    "prediction_drift_method": summ["prediction_drift_method"] or "",
                    "prediction_drifted": bool(summ["prediction_drifted"]),
                    "reference_model_version": reference.model_version,
                    "reference_window": reference.train_window,
                    "rows": summ["n_current"],
                    "report": dg.MetadataValue.path(summ["html_path"]),
                    "report_url": dg.MetadataValue.url(f"file://{summ['html_path']}"),
                    "seconds": summ["seconds"],
                },
                partition_key=key,
            )
            if summ["drift_share"] > worst[1]:
                worst = (key, summ["drift_share"])
        yield dg.Output(parts)
        over = [
            k
            for k, f in parts.items()
            if f.loc[f["kind"] == "feature", "drifted"].mean() > limits.drift_share_threshold
        ]
        yield dg.AssetCheckResult(
            check_name=drift_check,
            passed=not over,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "threshold": limits.drift_share_threshold,
                "max_drift_share": round(worst[1], 4),
                "max_day": worst[0] or "",
                "days_above": ", ".join(over) or "-",
            },
        )

    @dg.asset(
        group_name=group,
        owners=OWNERS,
        kinds={"python", "parquet"},
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        key=skew_key,
        metadata=ctx.metadata(names.SERVING_SKEW),
        deps=[ctx.key(names.VALIDATED_EVENTS), ctx.key(names.ONLINE_PREDICTIONS)],
        check_specs=[
            dg.AssetCheckSpec(
                skew_check,
                asset=skew_key,
                description="Fails (severity ERROR, non-blocking) when any online feature differs "
                f"from the batch engine's beyond the skew tolerance ({limits.skew_tolerance}): "
                "expected is zero.",
            )
        ],
        description=(
            "Training/serving skew: for the events the API scored that day, the features are "
            "recomputed with the batch engine over the history the online engine saw (lake days "
            "before + the day's requests, and the side tables' rows) and compared with the logged "
            "ones. One row per feature: mismatch count and rate, max and mean absolute "
            "difference, an example event."
        ),
    )
    def serving_skew(context: dg.AssetExecutionContext):
        from ml_platform.monitoring import daily

        cols = m.feature_columns
        log = daily.read_log(s, expand_features=False, use_case=uc)
        parts, bad_days, compared = {}, [], 0
        for key in context.partition_keys:
            t0 = time.perf_counter()
            result = daily.skew_for_day(
                s, key, cols, log, uc, label_delay_days=delay, tolerance=limits.skew_tolerance
            )
            frame = result.table.copy()
            frame.insert(0, "day", key)
            parts[key] = frame
            summ = result.summary()
            compared += summ["n_compared"]
            if not result.ok and result.n_logged:
                bad_days.append(key)
            context.add_asset_metadata(
                {
                    "n_logged": summ["n_logged"],
                    "n_compared": summ["n_compared"],
                    "n_missing": summ["n_missing"],
                    "mismatched_features": ", ".join(summ["mismatched_features"]) or "-",
                    "max_mismatch_rate": summ["max_mismatch_rate"],
                    "max_abs_diff": summ["max_abs_diff"],
                    "seconds": round(time.perf_counter() - t0, 3),
                },
                partition_key=key,
            )
        yield dg.Output(parts)
        yield dg.AssetCheckResult(
            check_name=skew_check,
            passed=not bad_days,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"days_with_skew": ", ".join(bad_days) or "-", "n_compared": compared},
        )

    @dg.asset(
        group_name=group,
        owners=OWNERS,
        kinds={"duckdb", "python"},
        key=ctx.key(names.MODEL_PERFORMANCE),
        metadata=ctx.metadata(names.MODEL_PERFORMANCE),
        deps=dbt_models,
        pool=names.WAREHOUSE_POOL,
        description=(
            f"Accuracy on matured labels per day, model version and source (batch / online): the "
            f"{uc.task} task's metrics ({', '.join(perf_metrics(uc))}), plus the primary metric "
            f"{primary.name} pooled over the trailing performance_window_days "
            f"({limits.performance_window_days}) days, compared with the champion's validation "
            f"figure in its direction ({primary.direction}): what the retraining sensor reads. "
            "Reads the use case's dbt models (prediction outcomes, performance mart) read-only."
        ),
    )
    def model_performance(context: dg.AssetExecutionContext) -> pd.DataFrame:
        from ml_platform.monitoring import daily

        t0 = time.perf_counter()
        outcomes = daily.outcomes_from_warehouse(s, uc)
        table = daily.model_performance_table(
            outcomes, daily.read_mart(s, uc), limits.performance_window_days, uc
        )
        day = names.WAREHOUSE_DAY
        meta: dict = {
            "rows": len(table),
            "labeled_predictions": len(outcomes),
            "primary_metric": primary.name,
            "primary_direction": primary.direction,
        }
        if len(table):
            last = table.sort_values(day).groupby(["model_version", "source"]).tail(1)
            for _, r in last.iterrows():
                prefix = f"v{r['model_version']}_{r['source']}"
                meta[f"{prefix}_last_day"] = str(r[day])
                meta[f"{prefix}_{primary.name}"] = finite_or_none(r[primary.name], 4)
                meta[f"{prefix}_{trailing}"] = finite_or_none(r[trailing], 4)
            meta |= champion_comparison(table, model_name, primary, trailing)
            meta["latest_labeled_day"] = str(table[day].max())
            preview = table.sort_values("tx_date").tail(10).round(4).to_string(index=False)
            meta["preview"] = dg.MetadataValue.md(f"```\n{preview}\n```")
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        context.add_output_metadata(meta)
        table[day] = table[day].astype(str) if len(table) else table.get(day)
        return table

    @dg.asset(
        group_name=group,
        owners=OWNERS,
        kinds={"python", "matplotlib"},
        key=ctx.key(names.MONITORING_SUMMARY),
        metadata=ctx.tags(),
        deps=[
            ctx.key(base)
            for base in (
                names.BATCH_PREDICTIONS,
                names.ONLINE_PREDICTIONS,
                names.DRIFT_REPORT,
                names.SERVING_SKEW,
                names.MODEL_PERFORMANCE,
            )
        ],
        description=(
            "One page of monitoring: a PNG chart (prediction volume, score distribution, drift "
            f"share, {primary.long} over time) shown in the metadata, and the system figures: API "
            "latency percentiles and throughput from the prediction log, BentoML's Prometheus "
            "/metrics when the API is up, and Dagster run durations per job. Files under the use "
            "case's reports folder."
        ),
    )
    def monitoring_summary(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from ml_platform.monitoring.summary import build_summary

        summary = build_summary(
            s,
            instance=context.instance,
            use_case=uc,
            drift_threshold=limits.drift_share_threshold,
        )
        png = summary["chart"]
        image = base64.b64encode(Path(png).read_bytes()).decode()
        return dg.MaterializeResult(
            metadata={
                "chart": dg.MetadataValue.path(png),
                "chart_preview": dg.MetadataValue.md(
                    f"![monitoring summary](data:image/png;base64,{image})"
                ),
                "summary_json": dg.MetadataValue.path(summary["json"]),
                "latest_drift_share": finite_or_none(summary.get("latest_drift_share"), 4),
                f"latest_{primary.name}": finite_or_none(summary.get(f"latest_{primary.name}"), 4),
                "primary_direction": primary.direction,
                "api": dg.MetadataValue.json(summary["api"]),
                "run_durations": dg.MetadataValue.json(summary["run_durations"]),
                "predictions": summary["n_predictions"],
            }
        )

    return [online_predictions, drift_report, serving_skew, model_performance, monitoring_summary]


def perf_metrics(uc: "UseCase") -> list[str]:
    """The metric columns of a use case's performance table (for descriptions)."""
    from ml_platform.monitoring.performance import GROUP_KEYS, performance_columns

    return [c for c in performance_columns(uc) if c not in GROUP_KEYS and not c.startswith("n_")]


def champion_comparison(
    table: pd.DataFrame, model_name: str, primary: "Metric", trailing: str
) -> dict:
    """The champion's latest trailing primary metric on batch predictions against its
    validation figure (``valid_<metric>`` tag), and the gain in the metric's direction
    (positive: better than at validation). Empty without a champion or a measured day."""
    from ml_platform.monitoring import daily

    try:
        _, info = daily.load_champion(model_name)
    except LookupError:
        return {}
    mine = table[
        (table["model_version"].astype(str) == str(info.version)) & (table["source"] == "batch")
    ].dropna(subset=[trailing])
    reference = finite_or_none(info.tags.get(f"valid_{primary.name}"))
    if mine.empty or reference is None:
        return {}
    recent = float(mine.sort_values(names.WAREHOUSE_DAY)[trailing].iloc[-1])
    return {
        "champion_version": str(info.version),
        f"champion_valid_{primary.name}": round(reference, 4),
        f"champion_{trailing}": round(recent, 4),
        "champion_gain": round(primary.gain(recent, reference), 4),
    }
