"""Serving assets: thin wrappers over ``ml_platform.serving`` (batch scoring, edge export).

:func:`build_serving_assets` builds ``<name>_batch_predictions`` and ``<name>_edge_package``
for one use case; both read the use case's registered model (``UseCase.model_name``). The
edge package is written to ``<data_dir>/edge`` (the flagship's) or ``<data_dir>/<name>_edge``
(:func:`edge_dir`); its parity report judges the loss in the task's metric.
"""

import logging
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from ml_platform.defs import names
from ml_platform.defs.context import StageContext

log = logging.getLogger(__name__)
OWNERS = ["team:ml-platform"]


def edge_dir(ctx: StageContext) -> Path:
    """Where the use case's edge package asset writes (two use cases never share it)."""
    folder = "edge" if ctx.is_flagship else ctx.name("edge")
    return ctx.settings.data_dir / folder


def build_serving_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Batch predictions per day with the champion, and the champion's edge package."""
    from ml_platform.serving.scoring import decision_column

    s = ctx.settings
    uc = ctx.use_case
    decision = decision_column(uc)
    rule = (
        f"{decision} (score > threshold, the flag's bound)"
        if uc.task == "regression"
        else f"{decision} (score >= threshold)"
    )
    group = ctx.name(names.SERVING)
    model_name = ctx.model_name
    champion = ctx.key(names.CHAMPION_MODEL)
    features = ctx.key(names.EVENT_FEATURES)

    @dg.asset(
        key=ctx.key(names.BATCH_PREDICTIONS),
        group_name=group,
        owners=OWNERS,
        kinds={"python", "lightgbm", "parquet"},
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"features": dg.AssetIn(features)},
        deps=[champion],
        metadata=ctx.metadata(names.BATCH_PREDICTIONS),
        description=(
            "The champion's score (a probability, or the predicted value) for every event of "
            f"the day: the event's keys, score, {rule}, threshold, model_name, "
            "model_version, feature_version. Scores the day's features with the model "
            "registered as "
            f"{model_name}@champion (native booster on numpy, ml_platform/serving/scoring.py, "
            "the same code the API uses). Idempotent: a re-run with the same champion "
            "rewrites the identical partition."
        ),
    )
    def batch_predictions(
        context: dg.AssetExecutionContext, features: pd.DataFrame
    ) -> dict[str, pd.DataFrame]:
        from ml_platform.serving.scoring import load_model, score_by_day

        t0 = time.perf_counter()
        model = load_model("champion", model_name=model_name, use_case=uc)
        parts = score_by_day(features, model, list(context.partition_keys), use_case=uc)
        rows = sum(len(p) for p in parts.values())
        flagged = sum(int(p[decision].sum()) for p in parts.values())
        context.add_output_metadata(
            {
                "model_name": model.name,
                "model_version": model.version,
                "threshold": model.threshold,
                "flagged": flagged,
                "flagged_share": round(flagged / rows, 6) if rows else 0.0,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        return parts

    @dg.asset(
        key=ctx.key(names.EDGE_PACKAGE),
        group_name=group,
        owners=OWNERS,
        kinds={"onnx", "python"},
        deps=[champion, features],
        metadata=ctx.tags(),
        description=(
            f"Edge package of the champion under {edge_dir(ctx)}: float32 ONNX model "
            "(LightGBM: fewest leading trees within the tolerance of the task's metric), a "
            "standalone predictor.py (numpy + onnxruntime only), metadata.json and "
            "parity.json (max score difference and the metric's loss vs the full model on "
            "the most recent labeled day, sizes, latencies). Same as `ml-platform "
            f"export-edge OUT_DIR --use-case {uc.name}`."
        ),
    )
    def edge_package(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from ml_platform.serving.edge import export_edge

        out = edge_dir(ctx)
        report = export_edge(out, settings=s, model_name=model_name, use_case=uc)
        loss = "ap" if uc.task == "binary" else "metric"
        if not report["passed"]:
            raise dg.Failure(
                f"edge parity failed: {loss} loss {report[f'{loss}_loss']} > "
                f"{report[f'max_{loss}_loss']}",
                metadata={"report": dg.MetadataValue.json(report)},
            )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(out)),
                "model_version": report["model_version"],
                f"{loss}_loss": report[f"{loss}_loss"],
                "max_abs_score_diff": report["max_abs_score_diff"],
                "edge_model_bytes": report["edge_model_bytes"],
                "full_model_bytes": report["full_model_bytes"],
                "trees_kept": report["trees_kept"],
                "edge_p50_us": report["edge_latency"]["single_row_p50_us"],
                "report": dg.MetadataValue.json(report),
            }
        )

    return [batch_predictions, edge_package]
