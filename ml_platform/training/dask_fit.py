"""The candidates fitted on a Dask cluster, for training sets one process should not hold.

LightGBM trains data-parallel through ``lightgbm.dask`` (one LightGBM machine per worker
holding rows). Early stopping watches the task's primary metric on the whole validation
window: every worker evaluates the same rows with the same synchronised trees, so all stop
at the same round (``lightgbm.dask`` alone would evaluate each worker's own share). The
linear baseline is the same penalised likelihood as :func:`models.fit_baseline`, solved by
Newton steps whose gradient and Hessian are sums over the workers' partitions (ridge: one
pass of normal equations). Both return the plain local models of :mod:`models` (a Booster,
a scikit-learn pipeline), so the registry, the gate and serving cannot tell where a model
was fitted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.training import datasets, metrics, models

if TYPE_CHECKING:
    from distributed import Client, Future

    from ml_platform.use_cases.loader import UseCase

#: Where a model was fitted, in its params (and so in the MLflow run).
COMPUTE_PARAM = "compute"
#: Newton iterations of the baseline at most, and the stopping tolerance on the decrement.
NEWTON_MAX_ITER = 50
NEWTON_TOL = 1e-10
#: Partitions per worker when a frame held by this process is sent to the cluster.
PARTS_PER_WORKER = 2


# --- partitions on the workers -----------------------------------------------------------
def scatter_frame(
    client: Client, frame: pd.DataFrame, columns: Sequence[str], n_parts: int | None = None
) -> list[Future]:
    """``frame[columns]`` cut into row ranges spread over the workers (round robin)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"train.{missing[0]}: column required")
    if frame.empty:
        raise ValueError("train: no rows")
    n = n_parts or PARTS_PER_WORKER * max(1, len(client.scheduler_info()["workers"]))
    n = max(1, min(n, len(frame)))
    bounds = np.linspace(0, len(frame), n + 1).astype(int)
    sub = frame[list(columns)]
    chunks = [
        sub.iloc[a:b].reset_index(drop=True)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]
    return client.scatter(chunks)


# --- the linear baseline -------------------------------------------------------------------
def _moments(part: pd.DataFrame, columns: list[str], label: str) -> tuple:
    """Rows, column means and sums of squared deviations, label sum/min/max of one part."""
    if label not in part.columns:
        raise ValueError(f"train.{label}: label column required")
    x = models.matrix(part, columns)
    y = part[label].to_numpy(dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError(f"train.{label}: {int((~np.isfinite(y)).sum())} values not finite")
    n = len(x)
    if n == 0:
        return 0, np.zeros(x.shape[1]), np.zeros(x.shape[1]), 0.0, np.inf, -np.inf
    mean = x.mean(axis=0)
    return n, mean, ((x - mean) ** 2).sum(axis=0), float(y.sum()), y.min(), y.max()


def _combine_moments(parts: list[tuple]) -> tuple:
    """Chan's pairwise update: exact global mean and variance without a second pass."""
    n, mean, m2, ysum, ymin, ymax = parts[0]
    for nb, mb, m2b, ys, lo, hi in parts[1:]:
        if nb == 0:
            continue
        total = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + m2b + delta**2 * (n * nb / total)
        n, ysum, ymin, ymax = total, ysum + ys, min(ymin, lo), max(ymax, hi)
    return n, mean, m2, ysum, ymin, ymax


def _design(part: pd.DataFrame, columns: list[str], mean: np.ndarray, scale: np.ndarray):
    """The standardised features with a column of ones (the intercept)."""
    z = (models.matrix(part, columns) - mean) / scale
    return np.hstack([z, np.ones((len(z), 1))])


def _logistic_pass(
    part: pd.DataFrame,
    columns: list[str],
    label: str,
    mean: np.ndarray,
    scale: np.ndarray,
    theta: np.ndarray,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Log loss, its gradient and Hessian in ``theta`` over one part."""
    a = _design(part, columns, mean, scale)
    y = part[label].to_numpy(dtype=np.float64)
    eta = a @ theta
    p = 0.5 * (1.0 + np.tanh(0.5 * eta))  # the logistic function, without overflow
    loss = float(np.sum(np.logaddexp(0.0, eta) - y * eta))
    return loss, a.T @ (p - y), (a * (p * (1.0 - p))[:, None]).T @ a


def _ridge_pass(
    part: pd.DataFrame,
    columns: list[str],
    label: str,
    mean: np.ndarray,
    scale: np.ndarray,
    y_mean: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z'Z, Z'(y - mean y) and the column sums of Z of one part (standardised Z)."""
    z = _design(part, columns, mean, scale)[:, :-1]
    y = part[label].to_numpy(dtype=np.float64) - y_mean
    return z.T @ z, z.T @ y, z.sum(axis=0)


def _sum(client: Client, futures: list[Future]) -> Any:
    """Element-wise sum of the small tuples the workers computed."""
    results = client.gather(futures)
    return tuple(sum(r[i] for r in results) for i in range(len(results[0])))


def _scaler(n: int, mean: np.ndarray, var: np.ndarray):
    """A fitted StandardScaler with the cluster's moments (zero variance scales by 1, as
    scikit-learn does)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_, scaler.var_ = mean, var
    scale = np.sqrt(var)
    scaler.scale_ = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
    scaler.n_samples_seen_, scaler.n_features_in_ = n, len(mean)
    return scaler


def fit_baseline(
    client: Client,
    parts: list[Future],
    feature_columns: list[str],
    c: float = models.BASELINE_C,
    *,
    use_case: UseCase | None = None,
) -> models.TrainedModel:
    """:func:`models.fit_baseline` on the workers' partitions: the same scaled logistic
    (or ridge) model, as a local scikit-learn pipeline."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline

    roles = datasets.Roles.of(use_case)
    cols, label = list(feature_columns), roles.label
    n, mean, m2, ysum, ymin, ymax = _combine_moments(
        client.gather(client.map(_moments, parts, columns=cols, label=label, pure=False))
    )
    if n == 0:
        raise ValueError("train: no rows")
    scaler = _scaler(n, mean, m2 / n)
    scale = scaler.scale_
    d = len(cols)
    shared = {"columns": cols, "label": label, "mean": mean, "scale": scale}
    if roles.task == "regression":
        y_mean = ysum / n
        ztz, zty, zsum = _sum(
            client,
            client.map(_ridge_pass, parts, **shared, y_mean=y_mean, pure=False),
        )
        zbar = zsum / n  # ~0: the scaler's own mean; sklearn centres by it too
        ztz_c = ztz - n * np.outer(zbar, zbar)
        w = np.linalg.solve(ztz_c + models.RIDGE_ALPHA * np.eye(d), zty)
        ridge = Ridge(alpha=models.RIDGE_ALPHA)
        ridge.coef_, ridge.intercept_ = w, float(y_mean - zbar @ w)
        ridge.n_features_in_ = d
        return models.TrainedModel(
            models.REGRESSION_BASELINE,
            make_pipeline(scaler, ridge),
            cols,
            {"alpha": models.RIDGE_ALPHA, COMPUTE_PARAM: "dask"},
        )
    if ymin == ymax:
        raise ValueError(f"train.{label}: needs both classes, got only {int(ymin)}")
    theta = np.zeros(d + 1)
    penalty = np.r_[np.ones(d), 0.0]  # the intercept is not penalised

    def objective(t: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        loss, grad, hess = _sum(
            client,
            client.map(_logistic_pass, parts, **shared, theta=t, pure=False),
        )
        w = t * penalty
        return c * loss + 0.5 * w @ w, c * grad + w, c * hess + np.diag(penalty)

    f, g, h = objective(theta)
    iterations = 0
    while iterations < NEWTON_MAX_ITER:
        step = np.linalg.solve(h, g)
        decrement = float(g @ step)
        if decrement / 2 <= NEWTON_TOL * max(1.0, abs(f)):
            break
        iterations += 1
        t = 1.0
        while True:  # backtracking: the likelihood must decrease (Armijo)
            nf, ng, nh = objective(theta - t * step)
            if nf <= f - 1e-4 * t * decrement or t < 1e-8:
                break
            t /= 2
        theta, f, g, h = theta - t * step, nf, ng, nh
    lr = LogisticRegression(C=c, max_iter=1000)
    lr.coef_, lr.intercept_ = theta[None, :d], theta[d:]
    lr.classes_ = np.array([0, 1], dtype=np.int8)
    lr.n_features_in_, lr.n_iter_ = d, np.array([iterations])
    params = {"C": c, "max_iter": 1000, COMPUTE_PARAM: "dask"}
    return models.TrainedModel(models.BASELINE, make_pipeline(scaler, lr), cols, params)


# --- LightGBM ------------------------------------------------------------------------------
#: Validation windows held by this worker process for a running fit, by token.
_WINDOWS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _hold_window(token: str, x: np.ndarray, y: np.ndarray) -> None:
    _WINDOWS[token] = (x, y)


class ValidationStopper:
    """LightGBM callback: early stopping on the task's primary metric over the whole
    validation window, computed identically on every worker.

    ``data`` is ``(X, y)`` of the window, or the token under which every worker holds it
    (:func:`_hold_window`: sent once, not in the task graph, and not a Dask key the
    scheduler's memory manager could drop from a worker). Each round adds the
    newest tree's raw output to the running validation scores (one tree per round: one
    prediction of the window in all).
    """

    order = 30  # after LightGBM's own evaluation and logging
    before_iteration = False

    def __init__(
        self, data: tuple[np.ndarray, np.ndarray] | str, metric: metrics.Metric, binary: bool
    ):
        self.data, self.metric, self.binary = data, metric, binary
        self.patience = models.EARLY_STOPPING_ROUNDS
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None
        self.raw: np.ndarray | None = None
        self.best_score = -np.inf
        self.best_iteration = 0
        self.history: list[float] = []

    def _score(self) -> float:
        pred = 0.5 * (1.0 + np.tanh(0.5 * self.raw)) if self.binary else self.raw
        value = float(self.metric.compute(self.y, pred))
        return value if self.metric.higher_is_better else -value

    def __call__(self, env: Any) -> None:
        from lightgbm.callback import EarlyStopException

        if self.x is None:
            if isinstance(self.data, tuple):
                self.x, self.y = self.data
            else:
                self.x, self.y = _WINDOWS[self.data]
        tree = env.model.predict(
            self.x, raw_score=True, start_iteration=env.iteration, num_iteration=1
        )
        self.raw = tree if self.raw is None else self.raw + tree
        score = self._score()
        self.history.append(score)
        if score > self.best_score:
            self.best_score, self.best_iteration = score, env.iteration
        last = env.iteration == env.end_iteration - 1
        if last or env.iteration - self.best_iteration >= self.patience:
            value = self.best_score if self.metric.higher_is_better else -self.best_score
            best = [("valid", self.metric.name, value, self.metric.higher_is_better)]
            raise EarlyStopException(self.best_iteration, best)


def fit_lightgbm(
    client: Client,
    parts: list[Future],
    feature_columns: list[str],
    valid: pd.DataFrame,
    *,
    params: dict[str, Any] | None = None,
    use_case: UseCase | None = None,
) -> models.TrainedModel:
    """:func:`models.fit_lightgbm` data-parallel on the workers, early-stopped on ``valid``;
    the result is the local Booster (each worker uses its own threads)."""
    import dask.dataframe as dd
    import lightgbm as lgb

    task = metrics.task_metrics(use_case)
    label, binary = task.roles.label, task.roles.task == "binary"
    yv = models._labels(valid, "valid", task.roles)
    p = {**models.lightgbm_params(use_case), **(params or {})}
    p.pop("num_threads", None)  # lightgbm.dask uses each worker's threads
    meta = client.submit(lambda part: part.iloc[:0], parts[0]).result()
    frame = dd.from_delayed(parts, meta=meta, verify_meta=False)
    token = f"valid-{uuid.uuid4().hex}"
    client.run(_hold_window, token, models.matrix(valid, feature_columns), yv)
    stopper = ValidationStopper(token, task.primary, binary)
    estimator = lgb.DaskLGBMClassifier if binary else lgb.DaskLGBMRegressor
    model = estimator(client=client, n_estimators=models.MAX_ROUNDS, **p)
    try:
        model.fit(frame[list(feature_columns)], frame[label], callbacks=[stopper])
    finally:
        client.run(_WINDOWS.pop, token, None)
    booster = model.to_local().booster_
    best = int(booster.best_iteration or booster.current_iteration())
    booster.best_iteration = best
    p.update({"num_boost_round": best, COMPUTE_PARAM: "dask", "tree_learner": "data"})
    return models.TrainedModel(models.LIGHTGBM, booster, list(feature_columns), p, best)
