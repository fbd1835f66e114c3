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


def build_training_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Training set, candidate (train + register) and champion (the promotion gate)."""
    s = ctx.settings
    group = ctx.name(names.TRAINING)
    model_name = ctx.model_name

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
        ts = build_training_set(s)
        w = ts.windows
        context.add_output_metadata(
            {
                "as_of": ts.as_of.isoformat(),
                "train_window": f"{w.train_start}..{w.train_end}",
                "valid_window": f"{w.valid_start}..{w.valid_end}",
                "train_rows": len(ts.train),
                "valid_rows": len(ts.valid),
                "train_frauds": int(ts.train["tx_fraud"].sum()),
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
        metadata=ctx.tags(),
        description=(
            "Trains the scaled logistic-regression baseline and LightGBM (early stopping on "
            "the time-based validation); LightGBM is registered only if it beats the "
            "baseline's AP by ML_PLATFORM_BASELINE_MARGIN_AP. Logs params, metrics, datasets "
            "(digest + window), git commit, feature version, use case, packages and the model "
            f"to MLflow; registered as {model_name}, alias `challenger`."
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
        windows = windows_from_frame(training_set, s.label_delay_days)
        as_of = windows.valid_end + pd.Timedelta(days=s.label_delay_days)
        info, cands = train_and_register(
            s,
            TrainingSet(training_set, windows, as_of),
            model_name=model_name,
            use_case=ctx.use_case.name,
        )
        m = cands.chosen_metrics
        return dg.MaterializeResult(
            metadata={
                "model_name": info.name,
                "model_version": info.version,
                "model_kind": info.kind,
                "mlflow_run_id": info.run_id,
                "mlflow_model_uri": f"models:/{info.name}/{info.version}",
                "tracking_uri": s.tracking_uri,
                "selection": cands.reason,
                "valid_roc_auc": round(m["roc_auc"], 4),
                "valid_average_precision": round(m["average_precision"], 4),
                "valid_card_precision_at_100": round(m["card_precision_at_100"], 4),
                "baseline_average_precision": round(cands.baseline_metrics["average_precision"], 4),
                "threshold": round(cands.threshold, 6),
                "feature_version": info.feature_version,
                "dataset_digest": info.tags.get("dataset_digest", ""),
                "git_commit": info.tags.get("git_commit", ""),
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
            "labelled window; the challenger gets alias `champion` when its AP is better by "
            "ML_PLATFORM_PROMOTION_MARGIN_AP (the first model when it is at least the "
            "baseline). The decision and its reason are tagged on the model version either way."
        ),
    )
    def champion_model(
        context: dg.AssetExecutionContext, training_set: pd.DataFrame
    ) -> dg.MaterializeResult:
        from ml_platform.training import registry
        from ml_platform.training.gate import run_gate
        from ml_platform.training.workflow import WINDOW_COLUMN, windows_from_frame

        w = windows_from_frame(training_set, s.label_delay_days)
        valid = training_set[training_set[WINDOW_COLUMN] == "valid"].reset_index(drop=True)
        decision = run_gate(valid, f"{w.valid_start}..{w.valid_end}", model_name=model_name)
        champion = registry.current_version(registry.CHAMPION, model_name=model_name)
        meta = {
            "promoted": decision.promote,
            "reason": decision.reason,
            "gate_window": decision.window,
            "challenger_version": decision.challenger_version or "",
            "previous_champion_version": decision.champion_version or "",
            "champion_version": champion or "",
        }
        if decision.challenger_metrics:
            meta["challenger_average_precision"] = round(
                decision.challenger_metrics["average_precision"], 4
            )
        if decision.champion_metrics:
            meta["champion_average_precision"] = round(
                decision.champion_metrics["average_precision"], 4
            )
        context.log.info(
            f"promotion gate: {'PROMOTED' if decision.promote else 'kept champion'}: "
            f"{decision.reason}"
        )
        return dg.MaterializeResult(metadata=meta)

    return [training_set, candidate_model, champion_model]
