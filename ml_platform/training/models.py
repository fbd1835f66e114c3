"""The candidate models of a task: a scaled linear baseline and LightGBM.

"Start simple": the linear baseline (logistic regression for a binary label, standard-scaled
ridge regression for a numeric one) is always trained, and LightGBM ships only when it beats
the baseline on the task's primary metric, in that metric's direction, by a margin on the
time-based validation window. Both score a 2-D numpy array in the training feature order
(the serving path uses that directly). The decision: a binary task alerts above the
validation F1-optimal threshold; a regression task returns the value and a declared flag
(value > above). The label and the metrics come from the use case (default: the flagship).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.data.validation import default_use_case
from ml_platform.training import metrics
from ml_platform.training.datasets import Roles
from ml_platform.use_cases.loader import UseCase
from ml_platform.use_cases.spec import BASELINES

if TYPE_CHECKING:
    from distributed import Client

BASELINE = BASELINES["binary"]
REGRESSION_BASELINE = BASELINES["regression"]
LIGHTGBM = "lightgbm"

#: LightGBM defaults, chosen on validation windows only (benchmarks/quality.py).
LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    # Class imbalance (~0.9 % fraud): positives weighted x3. On the validation folds of
    # benchmarks/quality.py, 1 and 3 were equal within noise (AP 0.691 / 0.689) and the
    # sqrt class ratio (~10) cost 0.008 AP; early stopping uses average precision and the
    # alert threshold is the validation F1 optimum, both imbalance-aware.
    "scale_pos_weight": 3.0,
    # 4095 bins, not 255: with 255 quantile bins the sparse tail of the amount falls into wide
    # bins, so the exact "amount > 220" fraud rule of the data cannot be split on; on the 3
    # validation folds AP went 0.687 (255) -> 0.700 (1023) -> 0.709 (4095) -> 0.709 (16383).
    "max_bin": 4095,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "force_col_wise": True,
}
#: What differs for a numeric label: its objective (l1 when the task minimises MAE, else
#: l2) and no class weight.
REGRESSION_OBJECTIVES = {"mean_absolute_error": "l1"}
REGRESSION_OBJECTIVE = "l2"
#: The LightGBM metric early stopping watches for each primary metric (R² orders models as
#: l2 does on one window).
EARLY_STOPPING_METRICS = {
    "average_precision": "average_precision",
    "roc_auc": "auc",
    "log_loss": "binary_logloss",
    "mean_absolute_error": "l1",
    "root_mean_squared_error": "rmse",
    "r2": "l2",
}
MAX_ROUNDS = 1000
EARLY_STOPPING_ROUNDS = 50
BASELINE_C = 1.0
RIDGE_ALPHA = 1.0


@dataclass
class TrainedModel:
    """A fitted model with what is needed to score, log and reproduce it."""

    kind: str
    model: Any  # sklearn Pipeline (baseline) or lightgbm.Booster
    feature_columns: list[str]
    params: dict[str, Any]
    best_iteration: int | None = None

    def score(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Positive-class probability (binary) or predicted value (regression) for each row
        of a 2-D array in ``feature_columns`` order."""
        X = matrix(X, self.feature_columns)
        if self.kind == LIGHTGBM:
            return self.model.predict(X, num_iteration=self.best_iteration)
        if self.kind == REGRESSION_BASELINE:
            return self.model.predict(X)
        return self.model.predict_proba(X)[:, 1]


@dataclass
class CandidateSet:
    """Both candidates, their validation metrics and which one ships (and why)."""

    baseline: TrainedModel
    lightgbm: TrainedModel | None
    baseline_metrics: dict[str, float]
    lightgbm_metrics: dict[str, float] | None
    chosen: TrainedModel
    reason: str
    #: binary: the alert threshold learnt on validation; regression: the declared flag's
    #: bound (the flag is value > threshold)
    threshold: float
    chosen_metrics: dict[str, float] = field(default_factory=dict)
    #: regression: the name of the yes/no output the decision adds to the value
    flag: str | None = None

    def decide(self, score: np.ndarray) -> dict[str, np.ndarray]:
        """The decision on scores of :attr:`chosen` (see :func:`decision`)."""
        return decision(score, self.threshold, self.flag)


def matrix(X: np.ndarray | pd.DataFrame, feature_columns: list[str]) -> np.ndarray:
    """A float 2-D array in training column order; a DataFrame is reordered by name."""
    if isinstance(X, pd.DataFrame):
        missing = [c for c in feature_columns if c not in X.columns]
        if missing:
            raise ValueError(f"{missing[0]}: feature column missing ({len(missing)} missing)")
        return X[feature_columns].to_numpy(dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_columns):
        raise ValueError(
            f"X: expected shape (n, {len(feature_columns)}) in feature order, got {X.shape}"
        )
    return X


def _labels(df: pd.DataFrame, name: str, roles: Roles) -> np.ndarray:
    label = roles.label
    if label not in df.columns:
        raise ValueError(f"{name}.{label}: label column required")
    y = df[label].to_numpy()
    if len(y) == 0:
        raise ValueError(f"{name}: no rows")
    if roles.task == "regression":
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise ValueError(f"{name}.{label}: {int((~np.isfinite(y)).sum())} values not finite")
        return y
    if y.min() == y.max():
        raise ValueError(f"{name}.{label}: needs both classes, got only {int(y[0])}")
    return y.astype(np.int8)


def fit_baseline(
    train: pd.DataFrame,
    feature_columns: list[str],
    c: float = BASELINE_C,
    *,
    use_case: UseCase | None = None,
) -> TrainedModel:
    """The linear model every candidate must beat: standard-scaled logistic regression
    (binary, inverse strength ``c``) or ridge regression (regression, ``RIDGE_ALPHA``)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    roles = Roles.of(use_case)
    y = _labels(train, "train", roles)
    if roles.task == "regression":
        pipe = make_pipeline(StandardScaler(), Ridge(alpha=RIDGE_ALPHA))
        pipe.fit(matrix(train, feature_columns), y)
        params = {"alpha": RIDGE_ALPHA}
        return TrainedModel(REGRESSION_BASELINE, pipe, list(feature_columns), params)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    pipe.fit(matrix(train, feature_columns), y)
    return TrainedModel(BASELINE, pipe, list(feature_columns), {"C": c, "max_iter": 1000})


def lightgbm_params(use_case: UseCase | None = None) -> dict[str, Any]:
    """LightGBM's parameters for the task: :data:`LGBM_PARAMS` for a binary label; for a
    numeric one the l1 or l2 objective (by the primary metric) without the class weight."""
    task = metrics.task_metrics(use_case)
    if task.roles.task == "binary":
        return dict(LGBM_PARAMS)
    p = {k: v for k, v in LGBM_PARAMS.items() if k != "scale_pos_weight"}
    p["objective"] = REGRESSION_OBJECTIVES.get(task.primary.name, REGRESSION_OBJECTIVE)
    return p


def fit_lightgbm(
    train: pd.DataFrame,
    feature_columns: list[str],
    valid: pd.DataFrame | None = None,
    *,
    params: dict[str, Any] | None = None,
    num_boost_round: int | None = None,
    threads: int = 2,
    use_case: UseCase | None = None,
) -> TrainedModel:
    """LightGBM for the task (binary: class imbalance handled by ``scale_pos_weight``).

    With ``valid`` it stops early on the task's primary metric on validation (time-based,
    never the test days); without, it trains exactly ``num_boost_round`` rounds (a refit).
    """
    import lightgbm as lgb

    task = metrics.task_metrics(use_case)
    y = _labels(train, "train", task.roles)
    p = {**lightgbm_params(use_case), **(params or {}), "num_threads": threads}
    dtrain = lgb.Dataset(matrix(train, feature_columns), y, free_raw_data=True)
    if valid is not None:
        yv = _labels(valid, "valid", task.roles)
        dvalid = lgb.Dataset(matrix(valid, feature_columns), yv, reference=dtrain)
        p["metric"] = EARLY_STOPPING_METRICS[task.primary.name]
        booster = lgb.train(
            p,
            dtrain,
            num_boost_round=num_boost_round or MAX_ROUNDS,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        best = int(booster.best_iteration or booster.current_iteration())
    else:
        if not num_boost_round:
            raise ValueError("num_boost_round: required when no validation set is given")
        booster = lgb.train(p, dtrain, num_boost_round=num_boost_round)
        best = num_boost_round
    p["num_boost_round"] = best
    return TrainedModel(LIGHTGBM, booster, list(feature_columns), p, best)


def best_f1_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """The score threshold with the best F1 on a labelled window (the alert cut-off)."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y_true)
    if y.sum() == 0:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, score)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def decision(score: np.ndarray, threshold: float, flag: str | None = None) -> dict[str, np.ndarray]:
    """What a prediction decides. Binary (no ``flag``): ``alert`` = score >= threshold.
    Regression: the predicted ``value`` and ``<flag>`` = value > threshold."""
    score = np.asarray(score, dtype=float)
    if flag is None:
        return {"alert": score >= threshold}
    return {"value": score, flag: score > threshold}


def train_candidates(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    feature_columns: list[str],
    *,
    margin_ap: float = 0.005,
    threads: int = 2,
    lgb_params: dict[str, Any] | None = None,
    use_case: UseCase | None = None,
    client: Client | None = None,
    dask_min_rows: int = 0,
) -> CandidateSet:
    """Fit the task's candidates, measure them on ``valid``, and pick the one that ships.

    ``margin_ap`` is the margin on the primary metric (average precision for fraud) by
    which LightGBM must beat the baseline. With a Dask ``client`` and at least
    ``dask_min_rows`` training rows (the platform's ``dask_train_min_rows``), both are
    fitted on the cluster (:mod:`ml_platform.training.dask_fit`) into the same local models.
    """
    uc = use_case or default_use_case()
    task = metrics.task_metrics(uc)
    pm = task.primary
    _labels(valid, "valid", task.roles)
    parts = None
    if client is not None and len(train) >= dask_min_rows:
        from ml_platform.training import dask_fit

        columns = [*feature_columns, task.roles.label]
        parts = dask_fit.scatter_frame(client, train, columns)
        baseline = dask_fit.fit_baseline(client, parts, feature_columns, use_case=use_case)
    else:
        baseline = fit_baseline(train, feature_columns, use_case=use_case)
    base_m = metrics.evaluate(valid, baseline.score(valid), task)
    chosen, chosen_m = baseline, base_m
    gbm = gbm_m = None
    reason = "the baseline is the only candidate"
    if LIGHTGBM in uc.spec.task.candidates:
        if parts is not None:
            gbm = dask_fit.fit_lightgbm(
                client, parts, feature_columns, valid, params=lgb_params, use_case=use_case
            )
        else:
            gbm = fit_lightgbm(
                train, feature_columns, valid, params=lgb_params, threads=threads, use_case=use_case
            )
        gbm_m = metrics.evaluate(valid, gbm.score(valid), task)
        gain = pm.gain(gbm_m[pm.name], base_m[pm.name])
        if gain > margin_ap:
            chosen, chosen_m = gbm, gbm_m
            reason = f"lightgbm {pm.short} beats the baseline by {gain:.4f} > margin {margin_ap}"
        else:
            reason = (
                f"lightgbm {pm.short} gain {gain:.4f} <= margin {margin_ap}: the baseline ships"
            )
    d = uc.spec.task.decision
    if d.kind == "value_and_flag":
        threshold, flag = float(d.above), d.flag
    else:
        label = valid[task.roles.label].to_numpy()
        threshold, flag = best_f1_threshold(label, chosen.score(valid)), None
    return CandidateSet(baseline, gbm, base_m, gbm_m, chosen, reason, threshold, chosen_m, flag)
