"""Training assets: thin wrappers over ``ml_platform.training`` (workflow, registry, gate).

``<name>_training_set`` -> ``<name>_candidate_model`` -> ``<name>_champion_model`` (the
promotion gate), registered as the use case's model (``UseCase.model_name``). None is
partitioned: each run trains as of the newest day with features in the lake.
"""

import time

import dagster as dg
import pandas as pd

from ml_platform.defs import names
from ml_platform.defs.context import StageContext

OWNERS = ["team:ml-platform"]


def training_plan(ctx: StageContext):
    """The use case's training plan: its lake tables, dates and windows."""
    from ml_platform.training.workflow import Plan

    r = ctx.run
    return Plan(
        r.start_date,
        r.end_date,
        r.train_days,
        r.valid_days,
        r.label_delay_days,
        features_table=ctx.table(names.EVENT_FEATURES),
        events_table=ctx.table(names.VALIDATED_EVENTS),
        use_case=None if ctx.is_flagship else ctx.use_case,
    )


def _rounded(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """Every metric of a candidate, rounded, named ``<prefix><metric>``."""
    return {f"{prefix}{k}": round(float(v), 4) for k, v in metrics.items()}


def build_training_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Training set, candidate (train + register) and champion (the promotion gate)."""
    from ml_platform.training.metrics import task_metrics

    s = ctx.settings
    run = ctx.run
    group = ctx.name(names.TRAINING)
    model_name = ctx.model_name
    uc = None if ctx.is_flagship else ctx.use_case
    task = task_metrics(ctx.use_case)
    primary, label = task.primary, task.roles.label
    better = "higher" if primary.higher_is_better else "lower"

    @dg.asset(
        key=ctx.key(names.TRAINING_SET),
        group_name=group,
        owners=OWNERS,
        kinds={"python", "parquet"},
        deps=[ctx.key(names.EVENT_FEATURES), ctx.key(names.VALIDATED_EVENTS)],
        metadata=ctx.metadata(names.TRAINING_SET),
        description=(
            "Features + labels for the training window and the validation window, as of the "
            "newest featured day. Only matured labels (older than the label delay); the "
            "validation window (the newest matured days) is separated from training by the "
            "label delay. Column `window` says train/valid."
        ),
    )
    def training_set(context: dg.AssetExecutionContext) -> pd.DataFrame:
        from ml_platform.training.workflow import build_training_set

        t0 = time.perf_counter()
        ts = build_training_set(s, plan=training_plan(ctx))
        w = ts.windows
        y = ts.train[label]
        summary = (
            {"train_frauds": int(y.sum())}
            if ctx.is_flagship
            else {"train_label_mean": round(float(y.mean()), 4) if len(y) else None}
        )
        context.add_output_metadata(
            {
                "as_of": ts.as_of.isoformat(),
                "train_window": f"{w.train_start}..{w.train_end}",
                "valid_window": f"{w.valid_start}..{w.valid_end}",
                "train_rows": len(ts.train),
                "valid_rows": len(ts.valid),
                **summary,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        return ts.frame

    @dg.asset(
        key=ctx.key(names.CANDIDATE_MODEL),
        group_name=group,
        owners=OWNERS,
        kinds={"lightgbm", "scikitlearn", "mlflow"},
        ins={"training_set": dg.AssetIn(training_set.key)},
        required_resource_keys={names.COMPUTE_RESOURCE},
        metadata=ctx.tags(),
        description=(
            f"Trains the use case's candidates ({', '.join(ctx.use_case.spec.task.candidates)}"
            "; LightGBM with early stopping on the time-based validation); LightGBM is "
            f"registered only if it beats the linear baseline's {primary.short} ({better} is "
            "better) by "
            + ("ML_PLATFORM_BASELINE_MARGIN_AP" if ctx.is_flagship else "its baseline_margin")
            + ". Logs params, metrics, datasets (digest + window), git commit, feature "
            "version, use case, packages and the model to MLflow; registered as "
            f"{model_name}, alias `challenger`. With ML_PLATFORM_COMPUTE=dask, a training set "
            "of at least ML_PLATFORM_DASK_TRAIN_MIN_ROWS rows is fitted on the cluster."
        ),
    )
    def candidate_model(
        context: dg.AssetExecutionContext, training_set: pd.DataFrame
    ) -> dg.MaterializeResult:
        from ml_platform.training.workflow import (
            TrainingSet,
            train_and_register,
            windows_from_frame,
        )

        t0 = time.perf_counter()
        windows = windows_from_frame(training_set, run.label_delay_days, use_case=uc)
        as_of = windows.valid_end + pd.Timedelta(days=run.label_delay_days)
        # ask for the client only when the set is large enough: no cluster starts for nothing
        large = len(training_set) >= s.dask_train_min_rows
        compute = getattr(context.resources, names.COMPUTE_RESOURCE)
        client = compute.get_client() if large else None
        info, cands = train_and_register(
            s,
            TrainingSet(training_set, windows, as_of),
            model_name=model_name,
            use_case=ctx.use_case,
            margin=run.baseline_margin,
            features_table=ctx.table(names.EVENT_FEATURES),
            client=client,
        )
        chosen = {k: v for k, v in cands.chosen_metrics.items() if k in task.measures}
        return dg.MaterializeResult(
            metadata={
                "model_name": info.name,
                "model_version": info.version,
                "model_kind": info.kind,
                "mlflow_run_id": info.run_id,
                "mlflow_model_uri": f"models:/{info.name}/{info.version}",
                "tracking_uri": s.tracking_uri,
                "selection": cands.reason,
                **_rounded(chosen, "valid_"),
                f"baseline_{primary.name}": round(cands.baseline_metrics[primary.name], 4),
                "threshold": round(cands.threshold, 6),
                "feature_version": info.feature_version,
                "dataset_digest": info.tags.get("dataset_digest", ""),
                "git_commit": info.tags.get("git_commit", ""),
                "compute": "dask" if client is not None else "local",
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )

    @dg.asset(
        key=ctx.key(names.CHAMPION_MODEL),
        group_name=group,
        owners=OWNERS,
        kinds={"mlflow"},
        ins={"training_set": dg.AssetIn(training_set.key)},
        deps=[candidate_model],
        metadata=ctx.tags(),
        description=(
            "The promotion gate: scores challenger and champion on the same most recent "
            f"labelled window; the challenger gets alias `champion` when its {primary.short} "
            f"is better ({better}) by "
            + ("ML_PLATFORM_PROMOTION_MARGIN_AP" if ctx.is_flagship else "its promotion_margin")
            + " (the first model when it is at least the baseline). The decision and its "
            "reason are tagged on the model version either way."
        ),
    )
    def champion_model(
        context: dg.AssetExecutionContext, training_set: pd.DataFrame
    ) -> dg.MaterializeResult:
        from ml_platform.training import registry
        from ml_platform.training.gate import run_gate
        from ml_platform.training.workflow import WINDOW_COLUMN, windows_from_frame

        w = windows_from_frame(training_set, run.label_delay_days, use_case=uc)
        valid = training_set[training_set[WINDOW_COLUMN] == "valid"].reset_index(drop=True)
        decision = run_gate(
            valid,
            f"{w.valid_start}..{w.valid_end}",
            model_name=model_name,
            use_case=uc,
            margin=run.promotion_margin,
            bound=run.gate_min,
        )
        champion = registry.current_version(registry.CHAMPION, model_name=model_name)
        meta = {
            "promoted": decision.promote,
            "reason": decision.reason,
            "gate_window": decision.window,
            "challenger_version": decision.challenger_version or "",
            "previous_champion_version": decision.champion_version or "",
            "champion_version": champion or "",
        }
        for who, found in (
            ("challenger", decision.challenger_metrics),
            ("champion", decision.champion_metrics),
        ):
            if found:
                meta[f"{who}_{primary.name}"] = round(found[primary.name], 4)
        context.log.info(
            f"promotion gate: {'PROMOTED' if decision.promote else 'kept champion'}: "
            f"{decision.reason}"
        )
        return dg.MaterializeResult(metadata=meta)

    return [training_set, candidate_model, champion_model]
