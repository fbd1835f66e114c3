"""Metrics by name, with their direction and task kind, and the entity precision@k.

The registry :data:`REGISTRY` holds every built-in metric a task may declare (binary:
ROC AUC, average precision, log loss; regression: MAE, RMSE, R²), each knowing whether
higher or lower is better, so model selection, the gate and monitoring compare in the
metric's own direction. :func:`task_metrics` reads a use case's ``task`` (primary metric,
extra metrics, gate metric) and :func:`evaluate` measures them all on a labelled window.

A parametrised metric a use case may instantiate: ``entity_precision_at_k`` (per day, rank
the entities by their highest score and take the precision of the top k). The fraud use
case declares it as its card precision@100 (entity: the card's customer). Two flavours:

* :func:`card_precision_at_k` - the simple per-day version used on validation windows.
* :func:`protocol_card_precision_at_k` - the exact quality protocol (README, backtest):
  entities already detected (true positives in an earlier day's top k) are dropped, then
  entities are grouped (highest score, highest label) and the top k counted.

:func:`protocol_test_mask` drops the entities already known to be positive, and
:func:`protocol_metrics` puts the whole protocol together. Everything is vectorised except
the loop over test days that the "already detected" rule makes sequential. Columns come
from the use case (default: the platform's flagship one), never from a fixed list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from ml_platform.training.datasets import Roles
from ml_platform.use_cases.loader import UseCase
from ml_platform.use_cases.spec import METRICS as DECLARED_METRICS

DAY = "day"
SCORE = "score"
ENTITY = "entity"
LABEL = "label"
#: The parametrised metric function ranking entities per day.
ENTITY_PRECISION = "entity_precision_at_k"


def _check_binary(y: np.ndarray, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {y.shape}")
    if len(y) and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{name}: labels must be 0/1")
    return y.astype(np.int8, copy=False)


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (undefined, not an error)."""
    y = _check_binary(y_true)
    if len(np.unique(y)) < 2:
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(score, dtype=float)))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step-wise)."""
    y = _check_binary(y_true)
    if y.sum() == 0:
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, np.asarray(score, dtype=float)))


def _entity(use_case: UseCase | None) -> str:
    """The entity ``entity_precision_at_k`` ranks, as the use case's task declares it."""
    from ml_platform.data.validation import default_use_case

    uc = use_case or default_use_case()
    for m in uc.spec.task.extra_metrics:
        if not isinstance(m, str) and m.function == ENTITY_PRECISION and m.entity:
            return m.entity
    raise ValueError(f"task.extra_metrics: use case {uc.name!r} declares no {ENTITY_PRECISION}")


def _frame(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    day_col: str | None,
    use_case: UseCase | None = None,
    entity: str | None = None,
) -> pd.DataFrame:
    """Normalise the inputs to columns day, entity, score, label."""
    r = Roles.of(use_case)
    entity = entity or _entity(use_case)
    for col in (entity, r.label):
        if col not in df.columns:
            raise ValueError(f"{col}: column required for {ENTITY_PRECISION}")
    scores = df[score].to_numpy() if isinstance(score, str) else np.asarray(score, dtype=float)
    if len(scores) != len(df):
        raise ValueError(f"score: {len(scores)} values for {len(df)} rows")
    if day_col is not None:
        day = df[day_col].to_numpy()
    elif r.event_time in df.columns:
        day = df[r.event_time].dt.normalize().to_numpy()
    else:
        raise ValueError(f"{r.event_time}: column required to find each event's day")
    return pd.DataFrame(
        {
            DAY: day,
            ENTITY: df[entity].to_numpy(),
            SCORE: scores,
            LABEL: df[r.label].to_numpy(),
        }
    )


def _per_card(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (day, entity): its highest score and highest label that day."""
    return frame.groupby([DAY, ENTITY], sort=False, as_index=False).agg(
        {SCORE: "max", LABEL: "max"}
    )


def _check_k(k: int) -> None:
    if k <= 0:
        raise ValueError(f"k: must be positive, got {k}")


def entity_precision_at_k(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    k: int = 100,
    *,
    entity: str | None = None,
    day_col: str | None = None,
    use_case: UseCase | None = None,
) -> float:
    """Per day, precision of the k entities with the highest score; mean over days."""
    _check_k(k)
    frame = _frame(df, score, day_col, use_case, entity)
    if frame.empty:
        return float("nan")
    cards = _per_card(frame).sort_values([DAY, SCORE], ascending=[True, False], kind="stable")
    top = cards.groupby(DAY, sort=True).head(k)
    per_day = top.groupby(DAY, sort=True)[LABEL].sum() / k
    return float(per_day.mean())


def card_precision_at_k(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    k: int = 100,
    *,
    day_col: str | None = None,
    use_case: UseCase | None = None,
) -> float:
    """Simple CP@k: :func:`entity_precision_at_k` on the entity the task declares."""
    return entity_precision_at_k(df, score, k, day_col=day_col, use_case=use_case)


def _protocol_days(frame: pd.DataFrame, k: int) -> Iterator[pd.DataFrame]:
    """Yield each day's top k entities in day order, without those detected on earlier days."""
    cards = _per_card(frame).sort_values([DAY, SCORE], ascending=[True, False], kind="stable")
    detected: set = set()
    for _, day_cards in cards.groupby(DAY, sort=True):
        if detected:
            day_cards = day_cards[~day_cards[ENTITY].isin(detected)]
        top = day_cards.head(k)
        detected.update(top.loc[top[LABEL] == 1, ENTITY].tolist())
        yield top


def protocol_card_precision_at_k(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    k: int = 100,
    *,
    day_col: str | None = None,
    use_case: UseCase | None = None,
) -> tuple[float, list[float]]:
    """CP@k of the Quality protocol: (mean over days, per-day values).

    Days are taken in order; each day, entities detected on an earlier day (positive and in
    that day's top k) are dropped before grouping by entity and taking the top k.
    """
    _check_k(k)
    frame = _frame(df, score, day_col, use_case)
    if frame.empty:
        return float("nan"), []
    per_day = [int(top[LABEL].sum()) / k for top in _protocol_days(frame, k)]
    return float(np.mean(per_day)), per_day


def protocol_alerts(
    df: pd.DataFrame,
    score: np.ndarray | pd.Series | str,
    k: int = 100,
    *,
    day_col: str | None = None,
    use_case: UseCase | None = None,
) -> pd.DataFrame:
    """The entities :func:`protocol_card_precision_at_k` counts: each day's top k (day,
    entity, highest score, highest label, under their own column names), for analyses of
    which positives a model finds."""
    _check_k(k)
    frame = _frame(df, score, day_col, use_case)
    tops = list(_protocol_days(frame, k))
    out = pd.concat(tops, ignore_index=True) if tops else _per_card(frame)
    return out.rename(columns={ENTITY: _entity(use_case), LABEL: Roles.of(use_case).label})


def protocol_test_mask(
    test: pd.DataFrame,
    history: pd.DataFrame,
    *,
    first_train_day: date,
    label_delay: int,
    use_case: UseCase | None = None,
) -> np.ndarray:
    """Which test rows to keep: drop entities already known to be positive.

    For test day T, an entity is known positive when ``history`` holds one of its positives
    dated between ``first_train_day`` and T - delay - 1 (inclusive). ``history`` is every
    labelled event from the first training day on.
    """
    r, entity = Roles.of(use_case), _entity(use_case)
    required = {"test": (entity, r.event_time), "history": (entity, r.event_time, r.label)}
    for name, frame in (("test", test), ("history", history)):
        missing = [c for c in required[name] if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}.{missing[0]}: column required for the protocol test set")
    first = pd.Timestamp(first_train_day)
    hist_day = history[r.event_time].dt.normalize()
    positives = history.loc[(history[r.label] == 1) & (hist_day >= first)]
    first_hit = positives.assign(_d=hist_day.loc[positives.index]).groupby(entity)["_d"].min()
    known_since = test[entity].map(first_hit)  # NaT when never positive
    cutoff = test[r.event_time].dt.normalize() - pd.Timedelta(days=label_delay + 1)
    known = known_since.notna() & (known_since <= cutoff)
    return ~known.to_numpy()


# --- the registry of metrics by name ------------------------------------------------------


def _check_values(y: np.ndarray, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {y.shape}")
    return y


def log_loss(y_true: np.ndarray, score: np.ndarray) -> float:
    """Binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    y = _check_binary(y_true)
    if not len(y):
        return float("nan")
    p = np.clip(np.asarray(score, dtype=float), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def mean_absolute_error(y_true: np.ndarray, prediction: np.ndarray) -> float:
    """Mean of |y - prediction|; NaN on an empty window."""
    y = _check_values(y_true)
    if not len(y):
        return float("nan")
    return float(np.mean(np.abs(y - _check_values(prediction, "prediction"))))


def root_mean_squared_error(y_true: np.ndarray, prediction: np.ndarray) -> float:
    """Square root of the mean squared error; NaN on an empty window."""
    y = _check_values(y_true)
    if not len(y):
        return float("nan")
    return float(np.sqrt(np.mean((y - _check_values(prediction, "prediction")) ** 2)))


def r2(y_true: np.ndarray, prediction: np.ndarray) -> float:
    """Coefficient of determination; NaN when the label is constant (undefined)."""
    y = _check_values(y_true)
    total = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    if total == 0.0:
        return float("nan")
    residual = float(np.sum((y - _check_values(prediction, "prediction")) ** 2))
    return 1.0 - residual / total


@dataclass(frozen=True)
class Metric:
    """A metric by name: its task kind, which way is better and how it reads in messages."""

    name: str
    task: str
    direction: str  # "maximize" or "minimize"
    short: str  # in messages next to a value ("AP 0.71")
    long: str  # in messages on its own ("ROC AUC 0.55 is below the floor")
    compute: Callable[[np.ndarray, np.ndarray], float]

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize"

    def gain(self, new: float, old: float) -> float:
        """How much ``new`` improves on ``old`` in this metric's direction (> 0: better)."""
        return new - old if self.higher_is_better else old - new

    def within(self, value: float, bound: float) -> bool:
        """``value`` is on the good side of ``bound`` (a floor, or a ceiling when lower is
        better); NaN never is."""
        if not np.isfinite(value):
            return False
        return value >= bound if self.higher_is_better else value <= bound

    @property
    def at_least(self) -> str:
        """The sign of "as good as" in this direction (for messages)."""
        return ">=" if self.higher_is_better else "<="


_BUILT_IN: dict[str, tuple[str, str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "average_precision": ("AP", "average precision", average_precision),
    "roc_auc": ("AUC", "ROC AUC", roc_auc),
    "log_loss": ("log loss", "log loss", log_loss),
    "mean_absolute_error": ("MAE", "MAE", mean_absolute_error),
    "root_mean_squared_error": ("RMSE", "RMSE", root_mean_squared_error),
    "r2": ("R2", "R2", r2),
}
#: Every built-in metric by name; the declarations' list of names and directions is the source.
REGISTRY: dict[str, Metric] = {
    name: Metric(name, task, direction, *_BUILT_IN[name])
    for task, names in DECLARED_METRICS.items()
    for name, direction in names.items()
}
if set(REGISTRY) != set(_BUILT_IN):  # pragma: no cover - a declared name without a function
    raise RuntimeError(f"metrics without a function: {sorted(set(REGISTRY) ^ set(_BUILT_IN))}")


def metric(name: str, task: str | None = None) -> Metric:
    """The built-in metric ``name`` (of the task kind ``task`` when given)."""
    found = REGISTRY.get(name)
    if found is None or (task is not None and found.task != task):
        known = ", ".join(n for n, m in REGISTRY.items() if task in (None, m.task))
        raise ValueError(f"metric {name!r}: not a {task or 'known'} metric ({known})")
    return found


@dataclass(frozen=True)
class TaskMetrics:
    """What a use case's task measures: the primary metric (selection, gate, retraining),
    the gate metric with its bound, and every metric reported on a labelled window."""

    roles: Roles
    primary: Metric
    gate: Metric | None
    gate_bound: float | None
    #: reported name -> (frame, score) -> value; the primary metric first
    measures: dict[str, Callable[[pd.DataFrame, np.ndarray], float]]


def _built_in(m: Metric, label: str) -> Callable[[pd.DataFrame, np.ndarray], float]:
    return lambda df, score: m.compute(df[label].to_numpy(), score)


def task_metrics(
    use_case: UseCase | None = None, *, k: int | None = None, day_col: str | None = None
) -> TaskMetrics:
    """The metrics ``use_case`` declares (default: the flagship). ``k`` overrides the k of
    each ``entity_precision_at_k`` (its name's ``_<k>`` suffix follows); ``day_col`` names
    a precomputed day column for them."""
    from ml_platform.data.validation import default_use_case

    uc = use_case or default_use_case()
    roles, t = Roles.of(uc), uc.spec.task
    primary = metric(t.primary_metric.name, roles.task)
    measures = {primary.name: _built_in(primary, roles.label)}
    for m in t.extra_metrics:
        if isinstance(m, str) or m.function is None:
            name = m if isinstance(m, str) else m.name
            measures[name] = _built_in(metric(name, roles.task), roles.label)
            continue
        n, name = m.k, m.name
        if k is not None and k != n:
            n, name = k, name.removesuffix(f"_{m.k}") + f"_{k}"
        measures[name] = _entity_measure(m.entity, n, day_col, uc)
    gate = metric(t.gate_metric, roles.task) if t.gate_metric else None
    if gate is not None:
        measures.setdefault(gate.name, _built_in(gate, roles.label))
    return TaskMetrics(roles, primary, gate, uc.spec.settings.gate_min, measures)


def _entity_measure(
    entity: str | None, k: int, day_col: str | None, uc: UseCase
) -> Callable[[pd.DataFrame, np.ndarray], float]:
    return lambda df, score: entity_precision_at_k(
        df, score, k, entity=entity, day_col=day_col, use_case=uc
    )


def evaluate(df: pd.DataFrame, score: np.ndarray, task: TaskMetrics) -> dict[str, float]:
    """Every metric of ``task`` on a labelled window, plus its row count (and, for a binary
    label, its positives; for a numeric one, the label's mean)."""
    y = df[task.roles.label].to_numpy()
    out = {name: measure(df, score) for name, measure in task.measures.items()}
    if task.roles.task == "binary":
        out |= {"n_transactions": float(len(df)), "n_frauds": float(int(np.asarray(y).sum()))}
    else:
        out |= {"n_rows": float(len(df)), "label_mean": float(np.mean(y)) if len(y) else np.nan}
    return out


def validation_metrics(
    df: pd.DataFrame,
    score: np.ndarray,
    k: int = 100,
    *,
    day_col: str | None = None,
    use_case: UseCase | None = None,
) -> dict[str, float]:
    """The task's metrics on a validation window (fraud: AP, AUC, the per-day CP@k)."""
    return evaluate(df, score, task_metrics(use_case, k=k, day_col=day_col))


def protocol_metrics(
    test: pd.DataFrame,
    score: np.ndarray,
    history: pd.DataFrame,
    *,
    first_train_day: date,
    label_delay: int,
    k: int = 100,
    use_case: UseCase | None = None,
) -> dict[str, object]:
    """The Quality protocol: drop known-positive entities, then AUC, AP and CP@k.

    ``score`` is aligned with ``test`` (every test event); the metrics use the kept rows.
    """
    score = np.asarray(score, dtype=float)
    if len(score) != len(test):
        raise ValueError(f"score: {len(score)} values for {len(test)} test rows")
    keep = protocol_test_mask(
        test, history, first_train_day=first_train_day, label_delay=label_delay, use_case=use_case
    )
    kept = test.loc[keep]
    s = score[keep]
    y = kept[Roles.of(use_case).label].to_numpy()
    cp, per_day = protocol_card_precision_at_k(kept, s, k, use_case=use_case)
    return {
        "roc_auc": roc_auc(y, s),
        "average_precision": average_precision(y, s),
        f"card_precision_at_{k}": cp,
        f"card_precision_at_{k}_per_day": [round(v, 4) for v in per_day],
        "n_test_transactions": int(len(test)),
        "n_scored_after_protocol": int(keep.sum()),
        "n_frauds_after_protocol": int(y.sum()),
    }


def flag_metrics(
    y_true: np.ndarray, prediction: np.ndarray, above: float, flag: str
) -> dict[str, float]:
    """A regression's yes/no flag (value > ``above``) judged against the same flag on the
    label: its precision, its recall and the share of rows flagged (NaN when undefined)."""
    y, value = _check_values(y_true), _check_values(prediction, "prediction")
    if len(value) != len(y):
        raise ValueError(f"prediction: {len(value)} values for {len(y)} labels")
    actual, flagged = y > above, value > above
    caught = float(np.sum(actual & flagged))
    nan = float("nan")
    return {
        f"{flag}_precision": caught / flagged.sum() if flagged.any() else nan,
        f"{flag}_recall": caught / actual.sum() if actual.any() else nan,
        f"{flag}_share": float(flagged.mean()) if len(value) else nan,
    }


def value_protocol_metrics(
    y_true: np.ndarray, prediction: np.ndarray, *, use_case: UseCase
) -> dict[str, float]:
    """The protocol of a regression on a test window: every metric its task declares (the
    primary first: MAE, RMSE, R² for flights), the row count and the label's mean, and for
    a ``value_and_flag`` decision the flag's precision, recall and share (:func:`flag_metrics`).
    Shared by the backtest and the quality benchmark."""
    task = task_metrics(use_case)
    if task.roles.task != "regression":
        raise ValueError(f"use case {use_case.name!r}: task is {task.roles.task}, not regression")
    out = evaluate(pd.DataFrame({task.roles.label: _check_values(y_true)}), prediction, task)
    d = use_case.spec.task.decision
    if d.kind == "value_and_flag":
        out |= flag_metrics(y_true, prediction, float(d.above), d.flag)
    return out
