"""Edge export: the champion as a small ONNX model, a standalone predictor and a parity report.

Size is cut two ways: float32 ONNX tree ensembles instead of LightGBM's float64 text model,
and for LightGBM the fewest leading trees whose quality on a *selection* day (the day before
the report window, so the report is not tuned on itself) stays within a tolerance of the
full model's. Quality is the task's: a binary use case's average precision (loss within
``SELECT_AP_TOLERANCE``; fraud), a regression's primary metric (flights: MAE, within
``SELECT_RELATIVE_TOLERANCE`` of the full model's value). The parity report then compares
edge and full model on the most recent labeled day(s): max |score difference|, decision
agreement, the metric of both and its loss (must be <= ``MAX_AP_LOSS``, or
``MAX_RELATIVE_LOSS`` of the full model's value, else the full tree count is exported),
sizes and latencies.

The package folder holds ``model.onnx``, ``metadata.json``, ``predictor.py`` (a copy of
``edge_predictor.py``: numpy + onnxruntime only; a classifier answers the probability and
the alert, a regressor the predicted value and its flag) and ``parity.json``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.defs import names
from ml_platform.serving.scoring import ScoringModel
from ml_platform.settings import Settings, get_settings
from ml_platform.training.datasets import Roles
from ml_platform.use_cases.loader import UseCase

MAX_AP_LOSS = 0.005
SELECT_AP_TOLERANCE = 0.002
#: A regression's edge model may lose this share of the full model's primary metric (MAE
#: 11.5 minutes: 0.115) on the report days, and this share on the selection day when pruned.
MAX_RELATIVE_LOSS = 0.01
SELECT_RELATIVE_TOLERANCE = 0.004
TREE_FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0)
PREDICTOR_SOURCE = Path(__file__).with_name("edge_predictor.py")
#: The classifier's ONNX output (n, 2), its positive class in column 1.
PROBABILITIES = "probabilities"


def _use_case(use_case: UseCase | None) -> UseCase:
    from ml_platform.data.validation import default_use_case

    return use_case or default_use_case()


@dataclass(frozen=True)
class Judge:
    """How an edge model is judged against the full one, by the use case's task: the
    metric, the name of its loss in the report and the losses allowed.

    A binary task keeps the flagship's report keys (``ap_loss``, ``max_ap_loss``,
    ``select_ap``); a regression's are ``metric_loss``, ``max_metric_loss``,
    ``select_metric``, its limits relative to the full model's value.
    """

    metric: str  # the metric's name (report keys full_<metric>, edge_<metric>)
    loss_key: str
    select_key: str
    higher_is_better: bool
    relative: bool
    compute: Any  # (y, score) -> float

    @classmethod
    def of(cls, use_case: UseCase) -> Judge:
        if use_case.task == "binary":
            return cls("average_precision", "ap", "select_ap", True, False, _ap)
        from ml_platform.training.metrics import task_metrics

        primary = task_metrics(use_case).primary
        return cls(
            primary.name,
            "metric",
            "select_metric",
            primary.higher_is_better,
            True,
            primary.compute,
        )

    def loss(self, full: float, edge: float) -> float:
        """How much worse ``edge`` is than ``full`` (> 0: worse)."""
        return full - edge if self.higher_is_better else edge - full

    def max_loss(self, full: float) -> float:
        return MAX_RELATIVE_LOSS * abs(full) if self.relative else MAX_AP_LOSS

    def select_tolerance(self, full: float) -> float:
        return SELECT_RELATIVE_TOLERANCE * abs(full) if self.relative else SELECT_AP_TOLERANCE


# --- data for the parity check ---------------------------------------------------------------


def label_delay(settings: Settings, use_case: UseCase) -> int:
    """Days until a day's labels are all known: the flagship's setting, any other use
    case's declaration (flights: its ``known_within``, 2)."""
    from ml_platform.use_cases.loader import declared_label_delay

    if use_case.is_flagship:
        return settings.label_delay_days
    return declared_label_delay(use_case) or settings.label_delay_days


def recent_labeled_days(
    settings: Settings, n_days: int = 1, *, use_case: UseCase | None = None
) -> list[date]:
    """The latest ``n_days`` partitions whose labels have matured (older than the delay)."""
    uc = _use_case(use_case)
    table = names.lake_table(names.VALIDATED_EVENTS, uc.name)
    present = lake.list_partitions(settings.lake_dir, table)
    if not present:
        raise FileNotFoundError(
            f"{table}: no partitions under {settings.lake_dir}; run the pipeline"
        )
    delay = label_delay(settings, uc)
    last = date.fromisoformat(present[-1])
    cutoff = last - timedelta(days=delay)
    labeled = [date.fromisoformat(d) for d in present if date.fromisoformat(d) <= cutoff]
    if len(labeled) < n_days:
        raise ValueError(
            f"days: need {n_days} labeled day(s) (<= {cutoff}, label delay "
            f"{delay}), the lake has {len(labeled)}"
        )
    return labeled[-n_days:]


def labeled_features(
    settings: Settings, days: list[date], *, use_case: UseCase | None = None
) -> pd.DataFrame:
    """The event id, label and feature columns of ``days``: the feature table if
    materialized, else (flagship) the batch engine over the validated events, look-back
    included."""
    from ml_platform.features import build_features, feature_set
    from ml_platform.features.definitions import horizon_days

    uc = _use_case(use_case)
    r, cols = Roles.of(uc), list(feature_set(uc).columns)
    events_table = names.lake_table(names.VALIDATED_EVENTS, uc.name)
    features_table = names.lake_table(names.EVENT_FEATURES, uc.name)
    root = settings.lake_dir
    tx = lake.read_partitions(root, events_table, days)
    have = set(lake.list_partitions(root, features_table))
    missing = [d.isoformat() for d in days if d.isoformat() not in have]
    if not missing:
        feats = lake.read_partitions(root, features_table, days)
    elif uc.is_flagship:
        first = min(days) - timedelta(days=horizon_days(settings.label_delay_days))
        span = [first + timedelta(days=i) for i in range((max(days) - first).days + 1)]
        history = lake.read_partitions(root, events_table, span, missing_ok=True)
        feats = build_features(history, label_delay_days=settings.label_delay_days)
    else:
        raise FileNotFoundError(
            f"{features_table}: no partition for {', '.join(missing)} under {root}; run "
            f"{uc.qualified(names.FEATURE_PIPELINE_JOB)}"
        )
    feats = feats[[r.event_id, *cols]]
    out = tx[[r.event_id, r.label]].merge(feats, on=r.event_id, how="left")
    if out[cols].isna().any().any():
        raise ValueError(f"{features_table}: some events of the parity days lack features")
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


def _convertible(booster: Any) -> Any:
    """The booster as onnxmltools recognises its objective: a regression's by its long name
    (``regression_l1``), not LightGBM's alias (``l1``) that a freshly trained booster keeps."""
    objective = str(booster.params.get("objective", ""))
    if not objective or objective.startswith(("binary", "multiclass", "regression")):
        return booster
    import lightgbm as lgb

    copy = lgb.Booster(model_str=booster.model_to_string())
    copy.params = {**booster.params, "objective": booster.dump_model(0)["objective"].split()[0]}
    return copy


def to_onnx(native: Any, n_features: int) -> bytes:
    """float32 ONNX, no ZipMap: a classifier's ``probabilities`` (n, 2) output, a
    regressor's predicted value (n, 1)."""
    if _is_lightgbm(native):
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        onx = convert_lightgbm(
            _convertible(native),
            initial_types=[("features", FloatTensorType([None, n_features]))],
            zipmap=False,
        )
    elif hasattr(native, "predict_proba"):
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        onx = convert_sklearn(
            native,
            initial_types=[("features", FloatTensorType([None, n_features]))],
            options={"zipmap": False},
        )
    elif hasattr(native, "predict"):  # a regressor (the ridge baseline's pipeline)
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        onx = convert_sklearn(
            native, initial_types=[("features", FloatTensorType([None, n_features]))]
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
    """Scores of an ONNX model: a classifier's positive-class probability, a regressor's
    value (its first output)."""

    def __init__(self, blob: bytes) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = PROBABILITIES if PROBABILITIES in outputs else outputs[0]
        self.column = 1 if self.output == PROBABILITIES else 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        (p,) = self.session.run([self.output], {self.input: np.asarray(x, np.float32)})
        return np.asarray(p, np.float64)[:, self.column]


def _ap(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    if y.sum() == 0:
        raise ValueError("days: the parity window has no positive label; pick more or other days")
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
    model: ScoringModel,
    select: pd.DataFrame,
    feature_columns: list[str],
    *,
    use_case: UseCase | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """The smallest acceptable ONNX model (LightGBM: fewest leading trees) + choice facts.

    Fewer trees shift a classifier's probabilities, so its edge threshold is re-set on the
    selection day to flag as many events as the full model does there (same alert rate); a
    regression's flag keeps its declared bound (the value's meaning does not shift).
    """
    uc = _use_case(use_case)
    judge = Judge.of(uc)
    native = model.native
    x = select[feature_columns].to_numpy(np.float64)
    y = select[Roles.of(uc).label].to_numpy()
    full_scores = model.score(x)
    if not _is_lightgbm(native):
        blob = to_onnx(native, len(feature_columns))
        return blob, {"trees_total": None, "trees_kept": None, "edge_threshold": model.threshold}
    total = lightgbm_trees(native)
    full_value = judge.compute(y, full_scores)
    tried = []
    for frac in TREE_FRACTIONS:
        k = max(1, int(round(total * frac)))
        if tried and k <= tried[-1]["trees"]:
            continue
        pruned = native if k >= total else prune_lightgbm(native, k)
        blob = to_onnx(pruned, len(feature_columns))
        edge_scores = _OnnxScorer(blob)(x)
        value = judge.compute(y, edge_scores)
        tried.append({"trees": k, judge.select_key: round(value, 6)})
        if judge.loss(full_value, value) <= judge.select_tolerance(full_value) or k >= total:
            threshold = model.threshold
            if k < total and uc.task == "binary":
                threshold = matched_threshold(model.decide(full_scores), edge_scores)
            return blob, {
                "trees_total": total,
                "trees_kept": k,
                "edge_threshold": threshold,
                f"select_full_{judge.loss_key}": round(full_value, 6),
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
    use_case: UseCase | None = None,
) -> dict[str, Any]:
    """Write the edge package for ``ref`` of ``model_name`` (default: the use case's
    registered model; the flagship's is ``settings.model_name``, the model the API serves)
    to ``out_dir`` (replaced atomically); the report."""
    from ml_platform.features import feature_set
    from ml_platform.serving.schemas import answer_fields
    from ml_platform.serving.scoring import load_model
    from ml_platform.use_cases.loader import registered_model_name

    s = settings or get_settings()
    uc = _use_case(use_case)
    judge = Judge.of(uc)
    fs = feature_set(uc)
    name = model_name or registered_model_name(uc, s.model_name)
    model = model or load_model(ref, model_name=name, use_case=uc)
    cols = list(fs.columns)
    label = Roles.of(uc).label
    days = recent_labeled_days(s, n_days + 1, use_case=uc)
    select_day, report_days = days[0], days[1:]
    report = labeled_features(s, report_days, use_case=uc)
    x, y = report[cols].to_numpy(np.float64), report[label].to_numpy()

    select = labeled_features(s, [select_day], use_case=uc)
    blob, choice = build_edge_model(model, select, cols, use_case=uc)
    full_scores = model.score(x)
    edge = _OnnxScorer(blob)
    edge_scores = edge(x)
    full_value, edge_value = judge.compute(y, full_scores), judge.compute(y, edge_scores)
    max_loss = judge.max_loss(full_value)
    pruned = choice["trees_kept"] not in (None, choice["trees_total"])
    if judge.loss(full_value, edge_value) > max_loss and pruned:
        # the selection day was not representative: ship every tree instead
        blob = to_onnx(model.native, len(cols))
        choice |= {
            "trees_kept": choice["trees_total"],
            "edge_threshold": model.threshold,
            "fallback": f"report {judge.loss_key.upper()} loss too high",
            "pruned_trees": choice["trees_kept"],
            f"pruned_{judge.metric}": round(edge_value, 6),
        }
        edge = _OnnxScorer(blob)
        edge_scores = edge(x)
        edge_value = judge.compute(y, edge_scores)
    # what reduced precision alone costs: every tree, float32
    if choice["trees_kept"] in (None, choice["trees_total"]):
        full_f32 = edge_scores
    else:
        full_f32 = _OnnxScorer(to_onnx(model.native, len(cols)))(x)
    edge_threshold = choice.pop("edge_threshold")
    decisions_full = model.decide(full_scores)
    decisions_edge = replace(model, threshold=edge_threshold).decide(edge_scores)
    loss = round(judge.loss(full_value, edge_value), 6)
    labels = {"frauds": int(y.sum())} if uc.task == "binary" else {"label_mean": float(y.mean())}
    parity = {
        "use_case": uc.name,
        "model_name": model.name,
        "model_version": model.version,
        "threshold": model.threshold,
        "feature_version": fs.version,
        "select_day": select_day.isoformat(),
        "report_days": [d.isoformat() for d in report_days],
        "rows": len(report),
        **labels,
        **choice,
        "edge_threshold": edge_threshold,
        "max_abs_score_diff": float(np.max(np.abs(full_scores - edge_scores))),
        "float32_all_trees_max_abs_diff": float(np.max(np.abs(full_scores - full_f32))),
        "decision_agreement": float(np.mean(decisions_full == decisions_edge)),
        f"full_{judge.metric}": round(full_value, 6),
        f"edge_{judge.metric}": round(edge_value, 6),
        f"{judge.loss_key}_loss": loss,
        f"max_{judge.loss_key}_loss": round(max_loss, 6),
        "full_model_bytes": native_size_bytes(model.native),
        "edge_model_bytes": len(blob),
        "edge_model_gzip_bytes": len(gzip.compress(blob, 9)),
        "full_latency": _latency(model.score, x),
        "edge_latency": _latency(edge, x),
    }
    parity["size_ratio"] = round(parity["edge_model_bytes"] / parity["full_model_bytes"], 4)
    parity["passed"] = loss <= max_loss
    score_name, decision_name = answer_fields(uc)
    metadata = {
        "use_case": uc.name,
        "task": uc.task,
        "model_name": model.name,
        "model_version": model.version,
        "threshold": edge_threshold,
        "full_model_threshold": model.threshold,
        # the decision: score >= threshold (an alert), or score > threshold (a flag's bound)
        "strict": model.strict,
        "score_name": score_name,
        "decision_name": decision_name,
        "feature_columns": cols,
        "feature_version": fs.version,
        "output": edge.output,
        "output_column": edge.column,
        "input_dtype": "float32",
        "trees_kept": choice["trees_kept"],
        "trees_total": choice["trees_total"],
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": "features must be computed with the same feature definitions version",
    }
    if edge.output == PROBABILITIES:
        metadata["probability_output"] = PROBABILITIES
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
