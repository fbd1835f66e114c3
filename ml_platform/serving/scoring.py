"""Scoring shared by the batch asset, the real-time service and the edge export.

One place turns features into a decision (score >= the model's threshold), so the batch
predictions, the API answers and the edge package cannot disagree. Models come from the
MLflow registry as *native* predictors on float64 numpy in ``FEATURE_COLUMNS`` order
(LightGBM booster or scikit-learn pipeline): no pandas frame or pyfunc wrapper on the
request path. MLflow itself is imported only when a model is (re)loaded.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_DATETIME
from ml_platform.features.definitions import DEFAULT_USE_CASE

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

#: Columns of the flagship's ``batch_predictions`` table, in order (any use case's:
#: :func:`prediction_columns`).
PREDICTION_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    "score",
    "is_fraud",
    "threshold",
    "model_name",
    "model_version",
    "feature_version",
)


class NoModelError(LookupError):
    """The registry has no model under the requested alias (e.g. no champion yet)."""


class ModelLoadError(RuntimeError):
    """An alias points at a version that cannot be served (its message names the version)."""


@dataclass(frozen=True)
class ScoringModel:
    """A registered model ready to score 2-D float64 numpy rows in FEATURE_COLUMNS order."""

    name: str
    version: str
    threshold: float
    predict_proba: Callable[[np.ndarray], np.ndarray]
    native: Any = None
    feature_version: str | None = None
    alias: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    #: the decision is ``score > threshold`` (a regression's flag above its bound) rather
    #: than ``score >= threshold`` (a binary alert at its threshold)
    strict: bool = False

    def score(self, features: np.ndarray) -> np.ndarray:
        """The positive-class probability (binary) or the predicted value, per row."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        return np.asarray(self.predict_proba(x), dtype=np.float64).reshape(-1)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores)
        return scores > self.threshold if self.strict else scores >= self.threshold

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "threshold": self.threshold,
            "feature_version": self.feature_version,
            "loaded_at": self.loaded_at,
            "kind": type(self.native).__name__ if self.native is not None else None,
        }


# --- native predictors ------------------------------------------------------------------


def native_predict_fn(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The fastest probability function for a native model object.

    A LightGBM ``Booster`` scores one row through its single-row fast path (same scores,
    a tenth of the cost) and small batches with one thread (OpenMP start-up costs more
    than the trees); scikit-learn style models use ``predict_proba[:, 1]``. The returned
    function says whether one row takes the fast path (:func:`uses_single_row_fast_path`),
    so a silently lost fast path shows in tests and not only in latency.
    """
    kind = type(model).__name__
    if kind == "Booster" and hasattr(model, "num_trees"):
        from ml_platform.serving.lgbm_single_row import SingleRowPredictor

        booster = model
        fast = SingleRowPredictor.create(booster)

        def predict(x: np.ndarray) -> np.ndarray:
            if fast is not None and fast.applies(x):
                return fast.predict(x)
            threads = 1 if len(x) < 512 else 0
            return booster.predict(x, num_threads=threads)

        setattr(predict, SINGLE_ROW_FAST_PATH, fast is not None)
        return predict
    if hasattr(model, "booster_") and hasattr(model, "predict_proba"):  # LGBMClassifier
        return native_predict_fn(model.booster_)
    if hasattr(model, "predict_proba"):
        return lambda x: model.predict_proba(x)[:, 1]
    if hasattr(model, "predict"):  # a regressor (e.g. the ridge baseline's pipeline)
        return model.predict
    if callable(model):
        return model
    raise TypeError(f"model: cannot score with a {kind} (no predict_proba, not callable)")


#: Attribute of a :func:`native_predict_fn` function: True when one row skips Booster.predict.
SINGLE_ROW_FAST_PATH = "single_row_fast_path"


def uses_single_row_fast_path(model: ScoringModel) -> bool:
    """True when ``model`` scores one row through LightGBM's single-row fast path."""
    return bool(getattr(model.predict_proba, SINGLE_ROW_FAST_PATH, False))


# --- registry access (MLflow imported lazily) -------------------------------------------


def load_model(
    alias_or_version: str, *, model_name: str, use_case: UseCase | str = DEFAULT_USE_CASE
) -> ScoringModel:
    """Load a version or alias of the registered model ``model_name`` of ``use_case``.

    Raises ``NoModelError`` when nothing is registered under that alias/version, and
    ``ValueError`` when the model was trained on other features than this code computes
    for the use case (serving it would be training/serving skew).
    """
    from ml_platform.features.definitions import feature_set
    from ml_platform.training import registry

    fs = feature_set(use_case)

    try:
        native, info = registry.load_native_model(alias_or_version, model_name=model_name)
    except LookupError as exc:
        raise NoModelError(str(exc)) from exc
    model = ScoringModel(
        name=info.name,
        version=str(info.version),
        threshold=float(info.threshold),
        predict_proba=native_predict_fn(native.model),
        native=native.model,
        feature_version=info.feature_version or None,
        alias=None if str(alias_or_version).isdigit() else str(alias_or_version),
        info={"kind": info.kind, "run_id": info.run_id, "aliases": list(info.aliases)},
        strict=fs.label_task == "regression",  # a flag above its bound, not an alert at it
    )
    check_features(model, list(info.feature_columns), fs.columns, fs.version)
    return model


def check_features(
    model: ScoringModel,
    model_columns: Sequence[str],
    code_columns: Sequence[str],
    code_version: str,
) -> None:
    """Refuse a model whose feature list or definition version differs from the code's."""
    if model_columns and list(model_columns) != list(code_columns):
        raise ValueError(
            f"feature_columns: {model.name} v{model.version} was trained on "
            f"{len(model_columns)} features {list(model_columns)[:3]}..., this code computes "
            f"{len(code_columns)} {list(code_columns)[:3]}...; retrain before serving it"
        )
    if model.feature_version and model.feature_version != code_version:
        raise ValueError(
            f"feature_version: {model.name} v{model.version} was trained with feature "
            f"definitions {model.feature_version}, this code has {code_version}; retrain"
        )


def alias_version(alias: str, *, model_name: str) -> str | None:
    """The version an alias points at, or None: a cheap registry lookup for polling."""
    from ml_platform.training import registry

    return registry.current_version(alias, model_name=model_name)


class ModelSlots:
    """Champion and challenger currently served; swapped atomically on reload.

    ``refresh`` asks the registry which versions the aliases point at and loads only what
    changed, so polling costs one lookup per alias. A registry error or a version that
    cannot be loaded keeps the models already loaded (the service keeps answering) and is
    reported in ``last_error``, naming the version and the reason.
    """

    def __init__(
        self,
        model_name: str,
        loader: Callable[[str], ScoringModel] | None = None,
        version_of: Callable[[str], str | None] | None = None,
        *,
        use_case: UseCase | str = DEFAULT_USE_CASE,
    ) -> None:
        self.model_name = model_name
        self._loader = loader or functools.partial(
            load_model, model_name=model_name, use_case=use_case
        )
        self._version_of = version_of or functools.partial(alias_version, model_name=model_name)
        self._models: dict[str, ScoringModel | None] = {CHAMPION: None, CHALLENGER: None}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_refresh: str | None = None

    @property
    def champion(self) -> ScoringModel | None:
        return self._models[CHAMPION]

    @property
    def challenger(self) -> ScoringModel | None:
        return self._models[CHALLENGER]

    def refresh(self) -> dict[str, str | None]:
        """Reload any alias whose version changed; returns alias -> version now served."""
        with self._lock:
            errors = []
            for alias in (CHAMPION, CHALLENGER):
                try:
                    self._refresh_alias(alias)
                except Exception as exc:  # keep serving what we have
                    errors.append(f"{alias}: {type(exc).__name__}: {exc}")
                    log.warning("model refresh failed for %s: %s", alias, exc)
            self.last_error = "; ".join(errors) or None
            self.last_refresh = datetime.now(UTC).isoformat()
            return {a: (m.version if m else None) for a, m in self._models.items()}

    def _refresh_alias(self, alias: str) -> None:
        version = self._version_of(alias)
        current = self._models[alias]
        if version is None:
            if current is not None:
                log.info("alias %s removed; no longer serving version %s", alias, current.version)
            self._models[alias] = None
            return
        if current is not None and current.version == version:
            return
        try:
            model = self._loader(version)
        except Exception as exc:
            kept = f"still serving version {current.version}" if current else "nothing served"
            raise ModelLoadError(
                f"version {version} cannot be loaded ({type(exc).__name__}: {exc}); {kept}"
            ) from exc
        # the alias moved between the lookup and the load: keep the version we loaded
        self._models[alias] = _with_alias(model, alias)
        log.info("serving %s = %s version %s", alias, model.name, model.version)

    def start_polling(self, interval_s: float) -> None:
        """Re-check the aliases every ``interval_s`` seconds in a daemon thread."""
        if interval_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="model-alias-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _with_alias(model: ScoringModel, alias: str) -> ScoringModel:
    from dataclasses import replace

    return model if model.alias == alias else replace(model, alias=alias)


# --- batch scoring -----------------------------------------------------------------------


def _use_case(use_case: UseCase | str) -> UseCase:
    if not isinstance(use_case, str):
        return use_case
    from ml_platform.data.validation import default_use_case

    if use_case == DEFAULT_USE_CASE:
        return default_use_case()
    from ml_platform.use_cases import get_use_case

    return get_use_case(use_case)


def decision_column(use_case: UseCase | str = DEFAULT_USE_CASE) -> str:
    """The yes/no column of a use case's predictions, named like its API answer's (a binary
    alert ``is_<use case>``; a regression's declared flag)."""
    from ml_platform.serving.schemas import answer_fields

    return answer_fields(_use_case(use_case))[1]


def prediction_columns(use_case: UseCase | str = DEFAULT_USE_CASE) -> tuple[str, ...]:
    """Columns of a use case's ``batch_predictions``, in order: its event id, event time and
    entity keys, ``score`` (a probability, or the predicted value), the decision, the
    threshold (or the flag's bound) and the model's name, version and feature version."""
    from ml_platform.features.definitions import feature_set

    fs = feature_set(use_case)
    keys = (fs.event_id, fs.event_time, *fs.entity_columns)
    decision = decision_column(use_case)
    return (*keys, "score", decision, "threshold", "model_name", "model_version", "feature_version")


_KEY_DTYPES = {"int": "int64", "string": "string"}


def score_features(
    features: pd.DataFrame,
    model: ScoringModel,
    feature_columns: Sequence[str] | None = None,
    *,
    use_case: UseCase | str = DEFAULT_USE_CASE,
) -> pd.DataFrame:
    """Score a feature table (the event id + the feature columns [+ time, entity keys]) of
    ``use_case``: :func:`prediction_columns`, a missing time or key as NaT / -1 / NA."""
    from ml_platform.features.definitions import feature_set

    fs = feature_set(use_case)
    if feature_columns is None:
        feature_columns = fs.columns
    missing = [c for c in (fs.event_id, *feature_columns) if c not in features.columns]
    if missing:
        raise ValueError(f"features: missing column(s) {missing}")
    x = features[list(feature_columns)].to_numpy(dtype=np.float64)
    scores = model.score(x) if len(x) else np.empty(0)
    n = len(features)
    columns = prediction_columns(use_case)
    keys = {fs.event_id: _col(features, fs.event_id, n, _KEY_DTYPES[fs.event_id_type])}
    keys[fs.event_time] = _col(features, fs.event_time, n, "datetime64[ns]")
    for col, kind in fs.entities:
        keys[col] = _col(features, col, n, _KEY_DTYPES[kind])
    out = pd.DataFrame(
        {
            **keys,
            "score": scores,
            columns[len(keys) + 1]: model.decide(scores),
            "threshold": np.full(n, model.threshold, dtype=np.float64),
            "model_name": pd.Series([model.name] * n, dtype="string"),
            "model_version": pd.Series([model.version] * n, dtype="string"),
            "feature_version": pd.Series([model.feature_version or ""] * n, dtype="string"),
        }
    )
    return out


def _col(df: pd.DataFrame, name: str, n: int, dtype: str) -> Any:
    if dtype == "string":
        if name in df.columns:
            return pd.array(df[name].to_numpy(dtype=object), dtype="string")
        return pd.array([None] * n, dtype="string")
    if name in df.columns:
        return df[name].to_numpy(dtype=dtype)
    return np.full(n, np.datetime64("NaT") if dtype.startswith("datetime") else -1, dtype=dtype)


def score_by_day(
    features: pd.DataFrame,
    model: ScoringModel,
    days: Iterable[date | str],
    *,
    use_case: UseCase | str = DEFAULT_USE_CASE,
) -> dict[str, pd.DataFrame]:
    """Score a feature table and split it into ``{YYYY-MM-DD: predictions}`` for ``days``.

    Every requested day gets a frame (possibly empty); rows outside ``days`` are dropped
    and rows are sorted by event time, then event id, so a re-run writes identical files.
    """
    from ml_platform.data.lake import on_days, split_by_day
    from ml_platform.features.definitions import feature_set

    fs = feature_set(use_case)
    keys = sorted({d if isinstance(d, str) else d.isoformat() for d in days})
    if fs.event_time not in features.columns:
        raise ValueError(f"features: missing column {fs.event_time!r} (needed to split by day)")
    wanted = on_days(features, keys, column=fs.event_time)
    chosen = features if wanted.all() else features.loc[wanted]
    preds = score_features(chosen, model, use_case=use_case)
    if not _in_event_order(preds, fs.event_time, fs.event_id):
        preds = preds.sort_values([fs.event_time, fs.event_id], kind="stable", ignore_index=True)
    return split_by_day(preds, keys, column=fs.event_time)


def _in_event_order(df: pd.DataFrame, time: str, event_id: str) -> bool:
    """Already sorted by event time, then event id (a lake read usually is)?"""
    t = df[time].to_numpy(dtype="datetime64[ns]").view(np.int64)
    ids = df[event_id].to_numpy()
    return bool(np.all((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (ids[1:] >= ids[:-1]))))


def score_transactions(
    transactions: pd.DataFrame,
    model: ScoringModel,
    days: Iterable[date | str],
    label_delay_days: int,
) -> dict[str, pd.DataFrame]:
    """End to end from validated transactions (look-back included): features, then scores
    for ``days`` only (see :func:`score_by_day`). The batch asset reads the materialized
    ``transaction_features`` instead; this is the path when they are not materialized."""
    from ml_platform.features import FEATURE_COLUMNS, build_features_for_days

    keys = sorted({d if isinstance(d, str) else d.isoformat() for d in days})
    if transactions.empty:
        return score_by_day(_empty_features(FEATURE_COLUMNS), model, keys)
    feats = build_features_for_days(transactions, keys, label_delay_days)  # look-back: history
    return score_by_day(feats, model, keys)


def _empty_features(columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            TRANSACTION_ID: np.empty(0, np.int64),
            TX_DATETIME: np.empty(0, "datetime64[ns]"),
            **{c: np.empty(0) for c in columns},
        }
    )


def time_single_rows(model: ScoringModel, x: np.ndarray, n: int = 2000) -> dict[str, float]:
    """p50/p99 (µs) of scoring one row at a time: the figure the API's latency rests on."""
    rows = np.asarray(x, dtype=np.float64)
    times = np.empty(n)
    for i in range(n):
        row = rows[i % len(rows)].reshape(1, -1)
        t = time.perf_counter()
        model.score(row)
        times[i] = time.perf_counter() - t
    return {
        "p50_us": float(np.percentile(times, 50) * 1e6),
        "p99_us": float(np.percentile(times, 99) * 1e6),
    }
