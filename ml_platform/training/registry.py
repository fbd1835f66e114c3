"""MLflow tracking and registry: lineage on every run, aliases with who/why/when, rollback.

Every training run logs its parameters, validation metrics, the training and validation
data as MLflow datasets (digest + window), the git commit, the feature-definition version
and the package versions, and the model with a signature and an input example. The chosen
model is registered under the use case's model name (``UseCase.model_name``, e.g.
``fraud_detector``), in the MLflow experiment of that name (it starts with the use case's
name), tagged ``use_case``, and gets the ``challenger`` alias. Every function takes the
registered model's name: one registry serves every use case, never a global name.

Alias changes go through :func:`set_alias`, which records who/why/when as tags on the model
version and appends to the registered model's ``alias_history`` tag; the stack of
champions (``champion_stack``) is what :func:`rollback` pops.

The serving path calls :func:`load_native_model`: a LightGBM Booster or a scikit-learn
pipeline, scored directly on a numpy array (no pyfunc wrapper, ~30 us per row).
"""

from __future__ import annotations

import getpass
import json
import subprocess
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.settings import PROJECT_DIR, get_settings

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "alias_history"
STACK_TAG = "champion_stack"
MAX_HISTORY = 100
PACKAGES = ("mlflow", "lightgbm", "scikit-learn", "skops", "numpy", "pandas", "pyarrow", "dagster")
#: Exactly what the logged model needs (explicit: inferring takes 6-7 s per model).
MODEL_REQUIREMENTS = ("lightgbm", "scikit-learn", "skops", "numpy", "pandas", "scipy")


@dataclass
class ModelInfo:
    """What a consumer needs to know about a registered model version."""

    name: str
    version: str
    kind: str
    threshold: float
    feature_version: str
    feature_columns: list[str]
    run_id: str
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class NativeModel:
    """A registered model's native predictor: scores a 2-D numpy array in feature order."""

    def __init__(self, kind: str, model: Any, feature_columns: list[str]):
        self.kind = kind
        self.model = model
        self.feature_columns = feature_columns

    def score(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Fraud probability per row (1-D)."""
        from ml_platform.training.models import LIGHTGBM, matrix

        X = matrix(X, self.feature_columns)
        if self.kind == LIGHTGBM:
            return self.model.predict(X)
        return self.model.predict_proba(X)[:, 1]

    def predict_proba(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """scikit-learn style: columns (legit, fraud)."""
        p = self.score(X)
        return np.column_stack([1.0 - p, p])


# --- set-up ------------------------------------------------------------------------------


def _mlflow():
    """MLflow pointed at the configured tracking/registry URI (imported lazily: ~3 s)."""
    from ml_platform.runtime import quiet_telemetry

    quiet_telemetry()
    import mlflow

    # Known-harmless MLflow warnings on every run (a duplicated source registration and the
    # integer-label schema hint): keep the logs readable.
    for message in ("The specified dataset source", "Hint: Inferred schema contains integer"):
        warnings.filterwarnings("ignore", message=message, category=UserWarning)

    uri = get_settings().tracking_uri
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    return mlflow


def _client():
    mlflow = _mlflow()
    return mlflow.MlflowClient(tracking_uri=get_settings().tracking_uri)


def _experiment_id(model_name: str) -> str:
    """The experiment named after the model (so after its use case); artifacts beside the
    data, not in the cwd."""
    s = get_settings()
    client = _client()
    exp = client.get_experiment_by_name(model_name)
    if exp is not None:
        return exp.experiment_id
    root = getattr(s, "mlflow_artifact_root", None)
    if root:
        location = root
    else:
        artifacts = s.mlflow_artifacts_dir.resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        location = artifacts.as_uri()
    return client.create_experiment(model_name, artifact_location=location)


def git_commit() -> str:
    """HEAD of the project checkout, with ``-dirty`` when files differ; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def _who(who: str | None) -> str:
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- logging a training run ----------------------------------------------------------------


def log_training_run(
    candidates,  # models.CandidateSet
    train: pd.DataFrame,
    valid: pd.DataFrame,
    windows,  # datasets.Windows
    *,
    model_name: str,
    use_case: str | UseCase,
    feature_version: str,
    as_of: str | None = None,
    register: bool = True,
    extra_tags: dict[str, str] | None = None,
    features_table: str = "transaction_features",
) -> ModelInfo:
    """Log a training run with full lineage; register the chosen model as challenger of
    ``model_name``, the model of use case ``use_case`` (tagged on the run and the version).

    The label and the metrics tagged on the version (``valid_<primary>``,
    ``valid_<gate metric>``, ``baseline_<primary>``) are the use case's; the datasets'
    source is its lake table ``features_table``."""
    from ml_platform.features.online import resolve_use_case
    from ml_platform.training.datasets import dataset_digest
    from ml_platform.training.metrics import task_metrics

    uc = resolve_use_case(use_case)
    use_case = uc.name
    task = task_metrics(uc)
    label = task.roles.label
    mlflow = _mlflow()
    s = get_settings()
    chosen = candidates.chosen
    cols = chosen.feature_columns
    train_digest = dataset_digest(train[[*cols, label]])
    valid_digest = dataset_digest(valid[[*cols, label]])
    window = windows.as_dict()
    commit = git_commit()
    versions = package_versions()
    tags = {
        "use_case": use_case,
        "git_commit": commit,
        "feature_version": feature_version,
        "model_kind": chosen.kind,
        "selection_reason": candidates.reason,
        "dataset_digest": train_digest,
        "valid_dataset_digest": valid_digest,
        "train_window": f"{windows.train_start}..{windows.train_end}",
        "valid_window": f"{windows.valid_start}..{windows.valid_end}",
        "label_delay_days": str(windows.label_delay),
        **({"as_of": as_of} if as_of else {}),
        **{f"package.{k}": v for k, v in versions.items()},
        **(extra_tags or {}),
    }
    with mlflow.start_run(
        experiment_id=_experiment_id(model_name), run_name=f"{chosen.kind}-{windows.valid_end}"
    ) as run:
        mlflow.set_tags(tags)
        params = {
            "model_kind": chosen.kind,
            "threshold": round(candidates.threshold, 6),
            "n_features": len(cols),
            "baseline_margin_ap": s.baseline_margin_ap,
            **{f"window.{k}": v for k, v in window.items()},
            **{f"{chosen.kind}.{k}": v for k, v in chosen.params.items()},
        }
        if chosen is not candidates.baseline:
            params.update({f"baseline.{k}": v for k, v in candidates.baseline.params.items()})
        mlflow.log_params(params)
        run_metrics = {f"valid_{k}": v for k, v in candidates.chosen_metrics.items()}
        run_metrics |= {f"baseline_{k}": v for k, v in candidates.baseline_metrics.items()}
        if candidates.lightgbm_metrics:
            run_metrics |= {f"lightgbm_{k}": v for k, v in candidates.lightgbm_metrics.items()}
        mlflow.log_metrics({k: float(v) for k, v in run_metrics.items() if np.isfinite(v)})
        for context, frame, digest, (start, end) in (
            ("training", train, train_digest, (windows.train_start, windows.train_end)),
            ("validation", valid, valid_digest, (windows.valid_start, windows.valid_end)),
        ):
            ds = mlflow.data.from_pandas(
                frame[[*cols, label]],
                source=str(s.lake_dir / features_table),
                targets=label,
                name=f"{context}_set_{start}_{end}",
                digest=digest,
            )
            mlflow.log_input(
                ds, context=context, tags={"window": f"{start}..{end}", "rows": str(len(frame))}
            )
        model_uri = _log_model(mlflow, chosen, valid)
        run_id = run.info.run_id
    if not register:
        return ModelInfo(
            model_name,
            "",
            chosen.kind,
            candidates.threshold,
            feature_version,
            cols,
            run_id,
            metrics=run_metrics,
            tags=tags,
        )
    mv = mlflow.register_model(model_uri, model_name)
    mv_version = str(mv.version)
    version_tags = {
        "use_case": use_case,
        "model_kind": chosen.kind,
        "threshold": repr(float(candidates.threshold)),
        "feature_version": feature_version,
        "feature_columns": json.dumps(cols),
        "git_commit": commit,
        "dataset_digest": train_digest,
        "train_window": tags["train_window"],
        "valid_window": tags["valid_window"],
    }
    pm, gm = task.primary.name, task.gate.name if task.gate else None
    version_tags[f"valid_{pm}"] = f"{candidates.chosen_metrics[pm]:.6f}"
    if gm is not None:
        version_tags[f"valid_{gm}"] = f"{candidates.chosen_metrics[gm]:.6f}"
    version_tags[f"baseline_{pm}"] = f"{candidates.baseline_metrics[pm]:.6f}"
    client = _client()
    for k, v in version_tags.items():
        client.set_model_version_tag(model_name, mv_version, k, v)
    set_alias(
        CHALLENGER,
        mv_version,
        model_name=model_name,
        who="training",
        why=f"trained; {candidates.reason}",
    )
    return get_model_info(mv_version, model_name=model_name)


def _log_model(mlflow, chosen, valid: pd.DataFrame) -> str:
    from mlflow.models import infer_signature

    from ml_platform.training.models import LIGHTGBM

    example = valid[chosen.feature_columns].head(5).astype("float64")
    signature = infer_signature(example, chosen.score(example))
    reqs = [f"{k}=={v}" for k, v in package_versions(MODEL_REQUIREMENTS).items()]
    if chosen.kind == LIGHTGBM:
        info = mlflow.lightgbm.log_model(
            chosen.model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=reqs,
        )
    else:
        info = mlflow.sklearn.log_model(
            chosen.model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=reqs,
        )
    return info.model_uri


# --- reading the registry ------------------------------------------------------------------


def _version_of(ref: str | int, model_name: str) -> str:
    """``champion``/``@champion``/``challenger`` or a version number -> version string."""
    client = _client()
    ref = str(ref).strip().lstrip("@")
    if ref.isdigit():
        try:
            client.get_model_version(model_name, ref)
        except Exception as exc:  # mlflow raises MlflowException (RESOURCE_DOES_NOT_EXIST)
            raise ValueError(f"version: {model_name} has no version {ref}") from exc
        return ref
    try:
        return str(client.get_model_version_by_alias(model_name, ref).version)
    except Exception as exc:
        raise LookupError(f"alias: {model_name}@{ref} is not set") from exc


def get_model_info(ref: str | int, *, model_name: str) -> ModelInfo:
    """Registry facts about a version or alias (raises LookupError if the alias is unset)."""
    client = _client()
    version = _version_of(ref, model_name)
    mv = client.get_model_version(model_name, version)
    tags = dict(mv.tags)
    run_metrics: dict[str, float] = {}
    if mv.run_id:
        try:
            run_metrics = dict(client.get_run(mv.run_id).data.metrics)
        except Exception:  # the run may have been deleted; the version still stands
            run_metrics = {}
    return ModelInfo(
        name=model_name,
        version=str(mv.version),
        kind=tags.get("model_kind", "unknown"),
        threshold=float(tags.get("threshold", 0.5)),
        feature_version=tags.get("feature_version", ""),
        feature_columns=json.loads(tags.get("feature_columns", "[]")),
        run_id=mv.run_id or "",
        aliases=sorted(mv.aliases or []),
        metrics=run_metrics,
        tags=tags,
    )


def load_native_model(
    ref: str | int = CHAMPION, *, model_name: str
) -> tuple[NativeModel, ModelInfo]:
    """The native predictor of a version/alias and its :class:`ModelInfo` (fast path).

    Raises LookupError when the alias is not set (the service answers 503 then).
    """
    from ml_platform.training.models import LIGHTGBM

    mlflow = _mlflow()
    info = get_model_info(ref, model_name=model_name)
    uri = f"models:/{info.name}/{info.version}"
    if info.kind == LIGHTGBM:
        model = mlflow.lightgbm.load_model(uri)
    else:
        model = mlflow.sklearn.load_model(uri)
    return NativeModel(info.kind, model, info.feature_columns), info


def list_models(*, model_name: str) -> list[dict[str, Any]]:
    """Every version of ``model_name``, newest first: aliases, validation metrics, lineage."""
    client = _client()
    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except Exception:
        return []
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        info = get_model_info(mv.version, model_name=model_name)
        t = info.tags
        out.append(
            {
                "version": info.version,
                "aliases": info.aliases,
                "kind": info.kind,
                "threshold": round(info.threshold, 6),
                "valid_average_precision": _f(t.get("valid_average_precision")),
                "valid_roc_auc": _f(t.get("valid_roc_auc")),
                "valid_card_precision_at_100": _f(info.metrics.get("valid_card_precision_at_100")),
                "gate": {k.removeprefix("gate."): v for k, v in t.items() if k.startswith("gate.")},
                "lineage": {
                    "use_case": t.get("use_case"),
                    "run_id": info.run_id,
                    "git_commit": t.get("git_commit"),
                    "feature_version": info.feature_version,
                    "dataset_digest": t.get("dataset_digest"),
                    "train_window": t.get("train_window"),
                    "valid_window": t.get("valid_window"),
                },
                "alias_events": {k: v for k, v in t.items() if k.startswith("alias.")},
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
            }
        )
    return out


def alias_history(*, model_name: str) -> list[dict[str, str]]:
    """Every alias change of ``model_name``, oldest first (the last :data:`MAX_HISTORY`)."""
    return json.loads(_model_tag(model_name, HISTORY_TAG, "[]"))


def _f(v: Any) -> float | None:
    try:
        return round(float(v), 6)
    except (TypeError, ValueError):
        return None


def _model_tag(model_name: str, key: str, default: str) -> str:
    try:
        rm = _client().get_registered_model(model_name)
    except Exception:
        return default
    return dict(rm.tags).get(key, default)


# --- alias changes ---------------------------------------------------------------------------


def set_alias(
    alias: str, version: str | int, *, model_name: str, who: str | None = None, why: str
) -> None:
    """Point ``alias`` at ``version``, recording who/why/when (version tags + history)."""
    client = _client()
    version = _version_of(version, model_name)
    try:
        previous = str(client.get_model_version_by_alias(model_name, alias).version)
    except Exception:
        previous = None
    who, when = _who(who), _now()
    client.set_registered_model_alias(model_name, alias, version)
    for key, value in (("set_by", who), ("why", why[:4000]), ("set_at", when)):
        client.set_model_version_tag(model_name, version, f"alias.{alias}.{key}", value)
    if previous and previous != version:
        client.set_model_version_tag(
            model_name, previous, f"alias.{alias}.removed", f"{when} by {who}: {why[:500]}"
        )
    _append_alias_history(client, model_name, alias, version, previous, who, why, when)


def delete_alias(alias: str, *, model_name: str, who: str | None = None, why: str) -> None:
    client = _client()
    try:
        version = str(client.get_model_version_by_alias(model_name, alias).version)
    except Exception:
        return
    who, when = _who(who), _now()
    client.delete_registered_model_alias(model_name, alias)
    client.set_model_version_tag(
        model_name, version, f"alias.{alias}.removed", f"{when} by {who}: {why[:500]}"
    )
    _append_alias_history(client, model_name, alias, None, version, who, why, when)


def _append_alias_history(
    client,
    model_name: str,
    alias: str,
    version: str | None,
    previous: str | None,
    who: str,
    why: str,
    when: str,
) -> None:
    """Append one alias change to the registered model's bounded ``alias_history`` tag."""
    event = {
        "alias": alias,
        "version": version,
        "previous": previous,
        "who": who,
        "why": why[:500],
        "when": when,
    }
    history = (alias_history(model_name=model_name) + [event])[-MAX_HISTORY:]
    client.set_registered_model_tag(model_name, HISTORY_TAG, json.dumps(history))


def _stack(model_name: str) -> list[str]:
    return json.loads(_model_tag(model_name, STACK_TAG, "[]"))


def _set_stack(model_name: str, stack: list[str]) -> None:
    _client().set_registered_model_tag(model_name, STACK_TAG, json.dumps(stack[-MAX_HISTORY:]))


def promote(
    version: str | int,
    *,
    model_name: str,
    who: str | None = None,
    why: str = "manual promotion",
) -> ModelInfo:
    """Make ``version`` the champion (the previous one stays on the rollback stack)."""
    version = _version_of(version, model_name)
    current = current_version(CHAMPION, model_name=model_name)
    if current == version:
        raise ValueError(f"version: {version} is already the champion")
    set_alias(CHAMPION, version, model_name=model_name, who=who, why=why)
    stack = _stack(model_name)
    if current and (not stack or stack[-1] != current):
        stack.append(current)  # a champion set outside promote(): keep it reachable
    _set_stack(model_name, [*stack, version])
    if current_version(CHALLENGER, model_name=model_name) == version:
        delete_alias(CHALLENGER, model_name=model_name, who=who, why=f"promoted to {CHAMPION}")
    return get_model_info(version, model_name=model_name)


def rollback(*, model_name: str, who: str | None = None, why: str = "manual rollback") -> ModelInfo:
    """Give the champion alias back to the previous champion."""
    current = current_version(CHAMPION, model_name=model_name)
    if current is None:
        raise ValueError("rollback: there is no champion to roll back")
    stack = [v for v in _stack(model_name)]
    while stack and stack[-1] == current:
        stack.pop()
    if not stack:
        raise ValueError(f"rollback: version {current} is the first champion, nothing before it")
    previous = stack[-1]
    set_alias(
        CHAMPION,
        previous,
        model_name=model_name,
        who=who,
        why=f"rollback from {current}: {why}",
    )
    _set_stack(model_name, stack)
    return get_model_info(previous, model_name=model_name)


def current_version(alias: str, *, model_name: str) -> str | None:
    """The version an alias of ``model_name`` points at, or None."""
    try:
        return _version_of(alias, model_name)
    except LookupError:
        return None


def tag_version(version: str | int, tags: dict[str, str], *, model_name: str) -> None:
    client = _client()
    for k, v in tags.items():
        client.set_model_version_tag(model_name, str(version), k, str(v)[:4000])


def champion_report(*, model_name: str, use_case: UseCase | None = None) -> str:
    """One paragraph on the champion for the demo: version, validation metrics, lineage.

    The metrics are the use case's task's (the flagship's: ROC AUC, AP, CP@100 and the
    baseline's AP; a regression's: its primary metric first, then the others)."""
    try:
        info = get_model_info(CHAMPION, model_name=model_name)
    except LookupError:
        return "no champion yet: " + (
            get_model_info(CHALLENGER, model_name=model_name).tags.get(
                "gate.reason", "the gate has not run"
            )
            if current_version(CHALLENGER, model_name=model_name)
            else "no model registered"
        )
    m, t = info.metrics, info.tags
    nan = float("nan")
    head = (
        f"champion {info.name} v{info.version} ({info.kind}), trained on {t.get('train_window')}, "
        f"validated on {t.get('valid_window')}: "
    )
    tail = (
        f"features {info.feature_version}; "
        f"commit {t.get('git_commit', '?')[:12]}; gate: {t.get('gate.reason', 'manual')}"
    )
    if use_case is None or use_case.task == "binary":
        return (
            head
            + (
                f"ROC AUC {m.get('valid_roc_auc', nan):.4f}, "
                f"AP {m.get('valid_average_precision', nan):.4f}, "
                f"CP@100 {m.get('valid_card_precision_at_100', nan):.4f} "
                f"(baseline AP {m.get('baseline_average_precision', nan):.4f}); "
                f"threshold {info.threshold:.4f}; "
            )
            + tail
        )
    from ml_platform.training.metrics import REGISTRY, task_metrics

    task = task_metrics(use_case)
    shown = ", ".join(
        f"{REGISTRY[name].short} {m.get(f'valid_{name}', nan):.4f}"
        for name in task.measures
        if name in REGISTRY
    )
    pm = task.primary
    decision = use_case.spec.task.decision
    flag = f"flag {decision.flag} above {info.threshold:g}; " if decision.flag else ""
    return (
        head
        + (f"{shown} (baseline {pm.short} {m.get(f'baseline_{pm.name}', nan):.4f}); {flag}")
        + tail
    )
