"""Standalone edge predictor: numpy + onnxruntime only (no Dagster, MLflow, BentoML, pandas).

This file is copied verbatim into every edge package as ``predictor.py``; keep it free of
``ml_platform`` imports. Usage on a device::

    from predictor import EdgePredictor
    p = EdgePredictor("edge_pkg")            # folder with model.onnx + metadata.json
    p.predict_proba(rows)                    # rows: 2-D array in p.feature_columns order
    p.predict_one({"tx_amount": 12.5, ...})  # one feature dict -> (probability, is_fraud)

or ``python predictor.py edge_pkg features.csv`` (CSV with a header naming the features)
to print one JSON line per row.
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
    """The exported champion: fraud probability and decision from feature rows."""

    def __init__(self, package_dir: str | Path, threads: int = 1) -> None:
        root = Path(package_dir)
        meta_path, model_path = root / METADATA_FILE, root / MODEL_FILE
        for path in (meta_path, model_path):
            if not path.exists():
                raise FileNotFoundError(f"edge package: {path} is missing")
        self.metadata = json.loads(meta_path.read_text())
        self.feature_columns: list[str] = list(self.metadata["feature_columns"])
        self.threshold = float(self.metadata["threshold"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # one row at a time: threads cost more than trees
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the converters' static label shape warns on every batch
        self.session = ort.InferenceSession(
            str(model_path), opts, providers=["CPUExecutionProvider"]
        )
        self._input = self.session.get_inputs()[0].name
        self._output = self.metadata.get("probability_output", "probabilities")

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Fraud probability per row of a 2-D array in ``feature_columns`` order."""
        x = np.asarray(rows, dtype=np.float32)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != len(self.feature_columns):
            raise ValueError(
                f"rows: expected shape (n, {len(self.feature_columns)}), got {x.shape}"
            )
        if not np.isfinite(x).all():
            raise ValueError("rows: contains NaN or infinite values")
        (probs,) = self.session.run([self._output], {self._input: x})
        return np.asarray(probs, dtype=np.float64)[:, 1]

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """Fraud decision per row (probability >= the model's threshold)."""
        return self.predict_proba(rows) >= self.threshold

    def predict_one(self, features: dict[str, float]) -> tuple[float, bool]:
        missing = [c for c in self.feature_columns if c not in features]
        if missing:
            raise ValueError(f"features: missing {missing}")
        p = float(self.predict_proba(np.array([[features[c] for c in self.feature_columns]]))[0])
        return p, p >= self.threshold


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
    for p in predictor.predict_proba(x):
        decision = bool(p >= predictor.threshold)
        print(json.dumps({"fraud_probability": float(p), "is_fraud": decision}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
