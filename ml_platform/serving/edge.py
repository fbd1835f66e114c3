"""Edge export: the champion as a small ONNX model, a standalone predictor and a parity report.

Size is cut two ways: float32 ONNX tree ensembles instead of LightGBM's float64 text model,
and for LightGBM the fewest leading trees whose average precision stays within
``SELECT_AP_TOLERANCE`` of the full model on a *selection* day (the day before the report
window, so the report is not tuned on itself). The parity report then compares edge and
full model on the most recent labeled day(s): max |score difference|, AP of both, AP loss
(must be <= ``MAX_AP_LOSS``, else the full tree count is exported), sizes and latencies.

The package folder holds ``model.onnx``, ``metadata.json``, ``predictor.py`` (a copy of
``edge_predictor.py``: numpy + onnxruntime only) and ``parity.json``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.data.contract import TRANSACTION_ID, TX_FRAUD
from ml_platform.serving.scoring import ScoringModel
from ml_platform.settings import Settings, get_settings

MAX_AP_LOSS = 0.005
SELECT_AP_TOLERANCE = 0.002
TREE_FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0)
PREDICTOR_SOURCE = Path(__file__).with_name("edge_predictor.py")


# --- data for the parity check ---------------------------------------------------------------


def recent_labeled_days(settings: Settings, n_days: int = 1) -> list[date]:
    """The latest ``n_days`` partitions whose labels have matured (older than the delay)."""
    present = lake.list_partitions(settings.lake_dir, "validated_transactions")
    if not present:
        raise FileNotFoundError(
            f"validated_transactions: no partitions under {settings.lake_dir}; run the pipeline"
        )
    last = date.fromisoformat(present[-1])
    cutoff = last - timedelta(days=settings.label_delay_days)
    labeled = [date.fromisoformat(d) for d in present if date.fromisoformat(d) <= cutoff]
    if len(labeled) < n_days:
        raise ValueError(
            f"days: need {n_days} labeled day(s) (<= {cutoff}, label delay "
            f"{settings.label_delay_days}), the lake has {len(labeled)}"
        )
    return labeled[-n_days:]


def labeled_features(settings: Settings, days: list[date]) -> pd.DataFrame:
    """FEATURE_COLUMNS + tx_fraud for ``days``: the feature table if materialized, else the
    batch engine over the validated transactions (look-back included)."""
    from ml_platform.features import FEATURE_COLUMNS, build_features
    from ml_platform.features.definitions import horizon_days

    root = settings.lake_dir
    tx = lake.read_partitions(root, "validated_transactions", days)
    have = set(lake.list_partitions(root, "transaction_features"))
    if all(d.isoformat() in have for d in days):
        feats = lake.read_partitions(root, "transaction_features", days)
    else:
        first = min(days) - timedelta(days=horizon_days(settings.label_delay_days))
        span = [first + timedelta(days=i) for i in range((max(days) - first).days + 1)]
        history = lake.read_partitions(root, "validated_transactions", span, missing_ok=True)
        feats = build_features(history, label_delay_days=settings.label_delay_days)
    feats = feats[[TRANSACTION_ID, *FEATURE_COLUMNS]]
    out = tx[[TRANSACTION_ID, TX_FRAUD]].merge(feats, on=TRANSACTION_ID, how="left")
    if out[FEATURE_COLUMNS].isna().any().any():
        raise ValueError("transaction_features: some transactions of the parity days lack features")
    return out


# --- conversion ---------------------------------------------------------------------------


def _is_lightgbm(native: Any) -> bool:
    return type(native).__name__ == "Booster" and hasattr(native, "model_to_string")


def lightgbm_trees(booster: Any) -> int:
    best = int(getattr(booster, "best_iteration", 0) or 0)
    return best if best > 0 else int(booster.current_iteration())


def prune_lightgbm(booster: Any, n_trees: int) -> Any:
    """A new booster with only the first ``n_trees`` boosting rounds."""
    import lightgbm as lgb

    return lgb.Booster(model_str=booster.model_to_string(num_iteration=n_trees))


def to_onnx(native: Any, n_features: int) -> bytes:
    """float32 ONNX with a ``probabilities`` (n, 2) output, no ZipMap."""
    if _is_lightgbm(native):
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        onx = convert_lightgbm(
            native, initial_types=[("features", FloatTensorType([None, n_features]))], zipmap=False
        )
    elif hasattr(native, "predict_proba"):
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        onx = convert_sklearn(
            native,
            initial_types=[("features", FloatTensorType([None, n_features]))],
            options={"zipmap": False},
        )
    else:
        raise TypeError(f"model: cannot export a {type(native).__name__} to ONNX")
    return onx.SerializeToString()


def native_size_bytes(native: Any) -> int:
    """Size of the full model as MLflow stores it (LightGBM text / pickled pipeline)."""
    if _is_lightgbm(native):
        return len(native.model_to_string().encode())
    import pickle

    return len(pickle.dumps(native))


class _OnnxScorer:
    def __init__(self, blob: bytes) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        (p,) = self.session.run(["probabilities"], {self.input: np.asarray(x, np.float32)})
        return np.asarray(p, np.float64)[:, 1]


def _ap(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    if y.sum() == 0:
        raise ValueError("days: the parity window has no fraud; pick more or other days")
    return float(average_precision_score(y, score))


def _latency(fn: Any, x: np.ndarray, n: int = 1000) -> dict[str, float]:
    rows = x[: max(1, min(len(x), n))]
    times = np.empty(n)
    for i in range(n):
        r = rows[i % len(rows)].reshape(1, -1)
        t = time.perf_counter()
        fn(r)
        times[i] = time.perf_counter() - t
    t = time.perf_counter()
    fn(x)
    batch_s = time.perf_counter() - t
    return {
        "single_row_p50_us": round(float(np.percentile(times, 50) * 1e6), 1),
        "single_row_p99_us": round(float(np.percentile(times, 99) * 1e6), 1),
        "batch_rows_per_s": round(len(x) / batch_s) if batch_s > 0 else None,
    }


# --- export -------------------------------------------------------------------------------


def build_edge_model(
    model: ScoringModel, select: pd.DataFrame, feature_columns: list[str]
) -> tuple[bytes, dict[str, Any]]:
    """The smallest acceptable ONNX model (LightGBM: fewest leading trees) + choice facts.

    Fewer trees shift the probabilities, so the edge threshold is re-set on the selection
    day to flag as many transactions as the full model does there (same alert rate).
    """
    native = model.native
    x = select[feature_columns].to_numpy(np.float64)
    y = select[TX_FRAUD].to_numpy()
    full_scores = model.score(x)
    if not _is_lightgbm(native):
        blob = to_onnx(native, len(feature_columns))
        return blob, {"trees_total": None, "trees_kept": None, "edge_threshold": model.threshold}
    total = lightgbm_trees(native)
    full_ap = _ap(y, full_scores)
    tried = []
    for frac in TREE_FRACTIONS:
        k = max(1, int(round(total * frac)))
        if tried and k <= tried[-1]["trees"]:
            continue
        pruned = native if k >= total else prune_lightgbm(native, k)
        blob = to_onnx(pruned, len(feature_columns))
        edge_scores = _OnnxScorer(blob)(x)
        ap = _ap(y, edge_scores)
        tried.append({"trees": k, "select_ap": round(ap, 6)})
        if full_ap - ap <= SELECT_AP_TOLERANCE or k >= total:
            threshold = model.threshold
            if k < total:
                threshold = matched_threshold(full_scores >= model.threshold, edge_scores)
            return blob, {
                "trees_total": total,
                "trees_kept": k,
                "edge_threshold": threshold,
                "select_full_ap": round(full_ap, 6),
                "select_tried": tried,
            }
    raise AssertionError("unreachable: the full tree count is always accepted")


def matched_threshold(flagged: np.ndarray, scores: np.ndarray) -> float:
    """The threshold flagging as many rows of ``scores`` as ``flagged`` has True."""
    n = int(np.sum(flagged))
    if n == 0:
        return float(np.max(scores)) + 1e-9
    return float(np.sort(scores)[::-1][n - 1])


def export_edge(
    out_dir: Path | str,
    *,
    ref: str = "champion",
    n_days: int = 1,
    settings: Settings | None = None,
    model: ScoringModel | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Write the edge package for ``ref`` of ``model_name`` (default: the model the API
    serves, ``settings.model_name``) to ``out_dir`` (replaced atomically); the report."""
    from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION
    from ml_platform.serving.scoring import load_model

    s = settings or get_settings()
    model = model or load_model(ref, model_name=model_name or s.model_name)
    cols = list(FEATURE_COLUMNS)
    days = recent_labeled_days(s, n_days + 1)
    select_day, report_days = days[0], days[1:]
    report = labeled_features(s, report_days)
    x, y = report[cols].to_numpy(np.float64), report[TX_FRAUD].to_numpy()

    blob, choice = build_edge_model(model, labeled_features(s, [select_day]), cols)
    full_scores = model.score(x)
    edge = _OnnxScorer(blob)
    edge_scores = edge(x)
    full_ap, edge_ap = _ap(y, full_scores), _ap(y, edge_scores)
    pruned = choice["trees_kept"] not in (None, choice["trees_total"])
    if full_ap - edge_ap > MAX_AP_LOSS and pruned:
        # the selection day was not representative: ship every tree instead
        blob = to_onnx(model.native, len(cols))
        choice |= {
            "trees_kept": choice["trees_total"],
            "edge_threshold": model.threshold,
            "fallback": "report AP loss too high",
            "pruned_trees": choice["trees_kept"],
            "pruned_average_precision": round(edge_ap, 6),
        }
        edge = _OnnxScorer(blob)
        edge_scores = edge(x)
        edge_ap = _ap(y, edge_scores)
    # what reduced precision alone costs: every tree, float32
    if choice["trees_kept"] in (None, choice["trees_total"]):
        full_f32 = edge_scores
    else:
        full_f32 = _OnnxScorer(to_onnx(model.native, len(cols)))(x)
    edge_threshold = choice.pop("edge_threshold")
    decisions_full = full_scores >= model.threshold
    decisions_edge = edge_scores >= edge_threshold
    parity = {
        "model_name": model.name,
        "model_version": model.version,
        "threshold": model.threshold,
        "feature_version": FEATURE_VERSION,
        "select_day": select_day.isoformat(),
        "report_days": [d.isoformat() for d in report_days],
        "rows": len(report),
        "frauds": int(y.sum()),
        **choice,
        "edge_threshold": edge_threshold,
        "max_abs_score_diff": float(np.max(np.abs(full_scores - edge_scores))),
        "float32_all_trees_max_abs_diff": float(np.max(np.abs(full_scores - full_f32))),
        "decision_agreement": float(np.mean(decisions_full == decisions_edge)),
        "full_average_precision": round(full_ap, 6),
        "edge_average_precision": round(edge_ap, 6),
        "ap_loss": round(full_ap - edge_ap, 6),
        "max_ap_loss": MAX_AP_LOSS,
        "full_model_bytes": native_size_bytes(model.native),
        "edge_model_bytes": len(blob),
        "edge_model_gzip_bytes": len(gzip.compress(blob, 9)),
        "full_latency": _latency(model.score, x),
        "edge_latency": _latency(edge, x),
    }
    parity["size_ratio"] = round(parity["edge_model_bytes"] / parity["full_model_bytes"], 4)
    parity["passed"] = parity["ap_loss"] <= MAX_AP_LOSS
    metadata = {
        "model_name": model.name,
        "model_version": model.version,
        "threshold": edge_threshold,
        "full_model_threshold": model.threshold,
        "feature_columns": cols,
        "feature_version": FEATURE_VERSION,
        "probability_output": "probabilities",
        "input_dtype": "float32",
        "trees_kept": choice["trees_kept"],
        "trees_total": choice["trees_total"],
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "features must be computed with the same feature definitions version",
    }
    _write_package(Path(out_dir), blob, metadata, parity)
    return parity


def _write_package(out: Path, blob: bytes, metadata: dict, parity: dict) -> None:
    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "model.onnx").write_bytes(blob)
        (tmp / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        (tmp / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
        shutil.copyfile(PREDICTOR_SOURCE, tmp / "predictor.py")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
