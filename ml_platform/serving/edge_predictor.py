"""Standalone edge predictor: numpy + onnxruntime only (no Dagster, MLflow, BentoML, pandas).

This file is copied verbatim into every edge package as ``predictor.py``; keep it free of
``ml_platform`` imports. Usage on a device::

    from predictor import EdgePredictor
    p = EdgePredictor("edge_pkg")            # folder with model.onnx + metadata.json
    p.predict_score(rows)                    # rows: 2-D array in p.feature_columns order
    p.predict_one({"tx_amount": 12.5, ...})  # one feature dict -> (score, decision)

A classifier's score is the positive-class probability and its decision the alert
(score >= threshold); a regressor's score is the predicted value and its decision the flag
(value > threshold, e.g. flights' ``late`` above 15 minutes). Or
``python predictor.py edge_pkg features.csv`` (CSV with a header naming the features) to
print one JSON line per row, keyed like the API's answer (``fraud_probability`` and
``is_fraud``; ``predicted_dep_delay`` and ``late``).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"


class EdgePredictor:
    """The exported champion: its score and decision from feature rows."""

    def __init__(self, package_dir: str | Path, threads: int = 1) -> None:
        root = Path(package_dir)
        meta_path, model_path = root / METADATA_FILE, root / MODEL_FILE
        for path in (meta_path, model_path):
            if not path.exists():
                raise FileNotFoundError(f"edge package: {path} is missing")
        self.metadata = json.loads(meta_path.read_text())
        self.feature_columns: list[str] = list(self.metadata["feature_columns"])
        self.threshold = float(self.metadata["threshold"])
        self.strict = bool(self.metadata.get("strict", False))
        self.score_name = self.metadata.get("score_name", "fraud_probability")
        self.decision_name = self.metadata.get("decision_name", "is_fraud")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # one row at a time: threads cost more than trees
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the converters' static label shape warns on every batch
        self.session = ort.InferenceSession(
            str(model_path), opts, providers=["CPUExecutionProvider"]
        )
        self._input = self.session.get_inputs()[0].name
        self._output = self.metadata.get("output", "probabilities")
        self._column = int(self.metadata.get("output_column", 1))

    def predict_score(self, rows: np.ndarray) -> np.ndarray:
        """The score per row of a 2-D array in ``feature_columns`` order: a probability
        (classifier) or the predicted value (regressor)."""
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != len(self.feature_columns):
            raise ValueError(
                f"rows: expected shape (n, {len(self.feature_columns)}), got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("rows: contains NaN or infinite values")
        (out,) = self.session.run([self._output], {self._input: x})
        return np.asarray(out, dtype=np.float64)[:, self._column]

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """A classifier's positive-class probability per row (:meth:`predict_score`)."""
        return self.predict_score(rows)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """The decision on scores: the alert (>= threshold) or the flag (> its bound)."""
        scores = np.asarray(scores)
        return scores > self.threshold if self.strict else scores >= self.threshold

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The decision per row."""
        return self.decide(self.predict_score(rows))

    def predict_one(self, features: dict[str, float]) -> tuple[float, bool]:
        missing = [c for c in self.feature_columns if c not in features]
        if missing:
            raise ValueError(f"features: missing {missing}")
        s = float(self.predict_score(np.array([[features[c] for c in self.feature_columns]]))[0])
        return s, bool(self.decide(np.array([s]))[0])


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python predictor.py PACKAGE_DIR FEATURES.csv", file=sys.stderr)
        return 2
    predictor = EdgePredictor(argv[0])
    with open(argv[1], newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return 0
    x = np.array([[float(r[c]) for c in predictor.feature_columns] for r in rows])
    scores = predictor.predict_score(x)
    for s, decision in zip(scores, predictor.decide(scores), strict=True):
        print(json.dumps({predictor.score_name: float(s), predictor.decision_name: bool(decision)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
