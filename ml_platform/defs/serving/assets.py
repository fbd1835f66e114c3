"""Serving assets: thin wrappers over ``ml_platform.serving`` (batch scoring, edge export)."""

import time

import dagster as dg
import pandas as pd

from ml_platform.defs.partitions import daily_partitions
from ml_platform.settings import get_settings

GROUP = "serving"
OWNERS = ["team:ml-platform"]


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "lightgbm", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"transaction_features": dg.AssetIn()},
    deps=[dg.AssetKey("champion_model")],
    description=(
        "The champion's score for every transaction of the day: transaction_id, tx_datetime, "
        "customer_id, terminal_id, score, is_fraud (score >= threshold), threshold, "
        "model_name, model_version, feature_version. Scores the day's transaction_features "
        "with the model registered as fraud_detector@champion (native booster on numpy, "
        "ml_platform/serving/scoring.py, the same code the API uses). Idempotent: a re-run "
        "with the same champion rewrites the identical partition."
    ),
)
def batch_predictions(
    context: dg.AssetExecutionContext, transaction_features: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    from ml_platform.serving.scoring import load_model, score_by_day

    t0 = time.perf_counter()
    model = load_model("champion")
    parts = score_by_day(transaction_features, model, list(context.partition_keys))
    rows = sum(len(p) for p in parts.values())
    flagged = sum(int(p["is_fraud"].sum()) for p in parts.values())
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
    group_name=GROUP,
    owners=OWNERS,
    kinds={"onnx", "python"},
    deps=[dg.AssetKey("champion_model"), dg.AssetKey("transaction_features")],
    description=(
        "Edge package of the champion under <data_dir>/edge: float32 ONNX model (LightGBM: "
        "fewest leading trees within the AP tolerance), a standalone predictor.py (numpy + "
        "onnxruntime only), metadata.json and parity.json (max score difference and average "
        "precision loss vs the full model on the most recent labeled day, sizes, latencies). "
        "Same as `ml-platform export-edge OUT_DIR`."
    ),
)
def edge_package(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from ml_platform.serving.edge import export_edge

    s = get_settings()
    out = s.data_dir / "edge"
    report = export_edge(out, settings=s)
    if not report["passed"]:
        raise dg.Failure(
            f"edge parity failed: AP loss {report['ap_loss']} > {report['max_ap_loss']}",
            metadata={"report": dg.MetadataValue.json(report)},
        )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out)),
            "model_version": report["model_version"],
            "ap_loss": report["ap_loss"],
            "max_abs_score_diff": report["max_abs_score_diff"],
            "edge_model_bytes": report["edge_model_bytes"],
            "full_model_bytes": report["full_model_bytes"],
            "trees_kept": report["trees_kept"],
            "edge_p50_us": report["edge_latency"]["single_row_p50_us"],
            "report": dg.MetadataValue.json(report),
        }
    )
