"""Feature and prediction drift with Evidently 0.7 (one report per day).

The day's features (and the champion's scores on them) are compared with the champion's
training reference. Evidently picks the test per column from the data (normalised
Wasserstein metric for large numerical samples, K-S p-value for small ones, Jensen-Shannon
or chi-square for categorical columns), and the meaning of the score depends on the test: a
divergence drifts when it is at or above the threshold, a p-value when it is below. The method
is read from every column's result, never assumed.

Evidently takes ~8 s to import, so it is imported inside :func:`compute_drift` only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

#: Evidently tests whose value is a p-value (drift when the value is BELOW the threshold).
#: Every other registered test returns a divergence (drift when AT or ABOVE the threshold).
P_VALUE_METHODS = frozenset(
    {
        "K-S p_value",
        "chi-square p_value",
        "Z-test p_value",
        "Anderson-Darling",
        "Cramer-von Mises",
        "Epps-Singleton",
        "Fisher's Exact test",
        "g_test",
        "Mann-Whitney U-rank test",
        "t_test",
        "Total-Variation-Distance",  # despite its name, evidently returns the test's p-value
        "empirical_mmd",
    }
)

SCORE_COLUMN = "score"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """Key numbers of one drift report (the Dagster asset turns them into metadata)."""

    n_reference: int
    n_current: int
    features: list[ColumnDrift]
    prediction: ColumnDrift | None
    html_path: str | None = None
    seconds: float = 0.0
    evidently_drifted_count: int | None = None  # Evidently's own count, a cross-check
    extra: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def drifted_features(self) -> list[str]:
        return [c.column for c in self.features if c.drifted]

    @property
    def drift_share(self) -> float:
        return len(self.drifted_features) / self.n_features if self.features else 0.0

    def to_frame(self) -> pd.DataFrame:
        """One row per column (features, then the prediction score)."""
        rows = [asdict(c) | {"kind": "feature"} for c in self.features]
        if self.prediction is not None:
            rows.append(asdict(self.prediction) | {"kind": "prediction"})
        return pd.DataFrame(
            rows, columns=["column", "kind", "method", "score", "threshold", "drifted"]
        )

    def summary(self) -> dict:
        return {
            "drift_share": round(self.drift_share, 4),
            "n_drifted_features": len(self.drifted_features),
            "n_features": self.n_features,
            "drifted_features": self.drifted_features,
            "prediction_drift_score": None if self.prediction is None else self.prediction.score,
            "prediction_drift_method": None if self.prediction is None else self.prediction.method,
            "prediction_drifted": None if self.prediction is None else self.prediction.drifted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "html_path": self.html_path,
            "seconds": round(self.seconds, 3),
        }


def is_drifted(method: str, score: float, threshold: float) -> bool:
    """Drift decision for one column, in the direction the method's score runs."""
    if not np.isfinite(score):
        return False
    if method in P_VALUE_METHODS:
        return bool(score < threshold)
    return bool(score >= threshold)


def sample_reference(reference: pd.DataFrame, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """A deterministic uniform sample bounding the report's cost."""
    if len(reference) <= max_rows:
        return reference
    return reference.sample(n=max_rows, random_state=seed)


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    *,
    score_column: str | None = SCORE_COLUMN,
    html_path: Path | str | None = None,
    max_reference_rows: int = 50_000,
    full_report: bool | None = None,
) -> DriftResult:
    """Evidently data-drift report of ``current`` against ``reference`` on ``columns``.

    ``score_column`` (when present in both frames) is reported as the prediction drift and
    kept out of the drifted-feature share. ``html_path`` saves the HTML report there.

    Without ``html_path`` (``full_report`` unset) the same Evidently stat tests run without
    the report: Evidently picks the test per column with the function its report uses and
    decides drift itself, but the plotly rendering (~80% of a report's time) is skipped.
    The backtest replays the sensor's drift signal this way, day after day.
    """
    t0 = time.perf_counter()
    columns = list(columns)
    if not columns:
        raise ValueError("columns: at least one feature column is required")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}.{missing[0]}: feature column missing for the drift report")
        if frame.empty:
            raise ValueError(f"{name}: no rows to compare")
    with_score = (
        score_column is not None
        and score_column in reference.columns
        and score_column in current.columns
    )
    used = columns + ([score_column] if with_score else [])
    ref = sample_reference(reference[used], max_reference_rows).astype("float64")
    cur = current[used].astype("float64")
    bad = [c for c in used if not np.isfinite(cur[c].to_numpy()).all()]
    if bad:
        raise ValueError(f"current.{bad[0]}: non-finite values cannot be compared for drift")

    # Binary columns are categorical (Jensen-Shannon / chi-square), the rest numerical.
    categorical = [c for c in used if ref[c].nunique() <= 2 and cur[c].isin(ref[c]).all()]
    numerical = [c for c in used if c not in categorical]
    if full_report is None:
        full_report = html_path is not None
    if not full_report:
        per_column = _stat_tests(ref, cur, numerical, categorical)
        return DriftResult(
            n_reference=len(ref),
            n_current=len(cur),
            features=[per_column[c] for c in columns],
            prediction=per_column[score_column] if with_score else None,
            seconds=time.perf_counter() - t0,
        )

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset(columns=used)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    per_column: dict[str, ColumnDrift] = {}
    evidently_count = None
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("ValueDrift"):
            col, method = config["column"], str(config["method"])
            threshold, score = float(config["threshold"]), float(metric["value"])
            per_column[col] = ColumnDrift(
                col, method, score, threshold, is_drifted(method, score, threshold)
            )
        elif kind.endswith("DriftedColumnsCount"):
            evidently_count = int(round(float(metric["value"]["count"])))
    missing = [c for c in used if c not in per_column]
    if missing:
        raise RuntimeError(f"evidently returned no drift result for column {missing[0]!r}")
    saved = None
    if html_path is not None:
        html_path = Path(html_path)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
        saved = str(html_path)
    return DriftResult(
        n_reference=len(ref),
        n_current=len(cur),
        features=[per_column[c] for c in columns],
        prediction=per_column[score_column] if with_score else None,
        html_path=saved,
        seconds=time.perf_counter() - t0,
        evidently_drifted_count=evidently_count,
    )


def _stat_tests(
    ref: pd.DataFrame, cur: pd.DataFrame, numerical: list[str], categorical: list[str]
) -> dict[str, ColumnDrift]:
    """Evidently's per-column stat tests, chosen as its report chooses them, no rendering."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    out: dict[str, ColumnDrift] = {}
    for kind, cols in ((ColumnType.Numerical, numerical), (ColumnType.Categorical, categorical)):
        for col in cols:
            test = get_stattest(ref[col], cur[col], kind, None)
            res = test(ref[col], cur[col], kind, None)
            out[col] = ColumnDrift(
                col,
                test.display_name,
                float(res.drift_score),
                float(res.actual_threshold),
                bool(res.drifted),
            )
    return out
