"""``ml-platform backtest``: the real pipeline on external daily files, then the protocol.

1. Check the arguments (dates in order, test after training + label delay, a file for every
   day from the first training day to the last test day).
2. Materialize the real Dagster assets (raw -> validated -> transaction_features) over the
   needed days, feature look-back included, as ONE single-run backfill in an isolated
   temporary data directory and an ephemeral Dagster instance, in this process: the
   definitions are built for settings of their own (those dates, the files source, the
   temporary folder), so the caller's settings, instance and lake are never touched.
3. Tune on validation only: the protocol shifted back (fit on the same-length window that
   ends ``label_delay`` days before training, validate on the training window) picks
   LightGBM vs the baseline and the number of boosting rounds; then the chosen model is
   refit on the training window. The test days are never looked at before scoring.
4. Score every test event, write ``<event id>, score, model_version`` and return the test
   metrics of the use case's protocol: for fraud the Quality protocol (known-compromised
   customers dropped, CP@100 with detected cards removed); for a regression (flights) every
   metric its task declares (MAE, RMSE, R²) and its flag's precision and recall.

Any use case runs this way (``--use-case``): its own Dagster definitions, lake tables,
columns, candidates and metrics; its files source is ``<PREFIX>SOURCE=files`` with
``<PREFIX>SOURCE_DIR`` the folder given (side tables under ``<folder>/<table>/``).

Each stage reports its start and its end with seconds through ``log`` (the CLI prints them
on stderr): the Dagster pipeline alone takes most of a minute at full scale.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from ml_platform.training import datasets, metrics
from ml_platform.use_cases.loader import UseCase

OUT_SUFFIXES = (".parquet", ".csv")
#: Rounds when no earlier data allows validation (the median of the validated runs).
FALLBACK_ROUNDS = 100
#: Window errors name the command-line flags.
CLI_NAMES = {
    "train_start": "--train-start",
    "train_end": "--train-end",
    "valid_start": "--test-start",
    "valid_end": "--test-end",
    "label_delay": "--label-delay",
}


@dataclass(frozen=True)
class BacktestArgs:
    source: Path
    train_start: date
    train_end: date
    test_start: date
    test_end: date
    label_delay: int
    out: Path
    #: the use case backtested (default: the flagship)
    use_case: str = "fraud"


def default_label_delay(use_case: str) -> int:
    """``--label-delay`` when not given: the days until a label is known, as the use case
    declares it (fraud: 7; flights: its ``known_within``, 2)."""
    from ml_platform.use_cases import get_use_case
    from ml_platform.use_cases.loader import declared_label_delay

    return declared_label_delay(get_use_case(use_case)) or 7


def _has_file(source: Path, day: date) -> bool:
    return any((source / f"{day.isoformat()}{sfx}").exists() for sfx in OUT_SUFFIXES)


def _side_folders(a: BacktestArgs) -> list[Path]:
    """The folders of the use case's side tables' daily files (``<source>/<table>``)."""
    from ml_platform.use_cases import get_use_case

    return [a.source / t for t in get_use_case(a.use_case).spec.event_schema.side_tables]


def validate_args(a: BacktestArgs) -> None:
    """Raise ValueError naming the offending argument."""
    if a.label_delay < 1:
        raise ValueError(f"--label-delay: must be >= 1, got {a.label_delay}")
    datasets.check_windows(
        a.train_start, a.train_end, a.test_start, a.test_end, a.label_delay, CLI_NAMES
    )
    if a.out.suffix.lower() not in OUT_SUFFIXES:
        raise ValueError(f"--out: {a.out} must end in .parquet or .csv")
    if not a.source.is_dir():
        raise ValueError(f"--source: {a.source} is not a directory")
    days = [a.train_start + timedelta(days=i) for i in range((a.test_end - a.train_start).days + 1)]
    for folder in (a.source, *_side_folders(a)):
        missing = [d.isoformat() for d in days if not _has_file(folder, d)]
        if missing:
            raise ValueError(
                f"--source: no daily file (YYYY-MM-DD.parquet or .csv) in {folder} for "
                f"{len(missing)} needed day(s): {', '.join(missing[:5])}"
                + (" ..." if len(missing) > 5 else "")
            )


def plan_range(a: BacktestArgs, lookback_days: int) -> tuple[date, bool]:
    """First day to materialize, and whether the inner validation window is covered.

    Days before ``train_start`` are optional history: used back to what validation and the
    feature look-back need, as far as the files go without a hole.
    """
    inner = datasets.inner_validation_windows(a.train_start, a.train_end, a.label_delay)
    wanted = inner.train_start - timedelta(days=lookback_days)
    folders = (a.source, *_side_folders(a))
    first = a.train_start
    while first - timedelta(days=1) >= wanted and all(
        _has_file(f, first - timedelta(days=1)) for f in folders
    ):
        first -= timedelta(days=1)
    return first, first <= inner.train_start


def pipeline_settings(a: BacktestArgs, first: date, workdir: Path):
    """Settings of the backtest's own pipeline: the files source, its dates, a temp folder."""
    from ml_platform.settings import Settings

    return Settings(
        profile="embedded",
        source="files",
        source_dir=a.source.resolve(),
        start_date=first,
        end_date=a.test_end,
        label_delay_days=a.label_delay,
        data_dir=workdir / "data",
        dagster_home=workdir / "dagster_home",
        online_store="sqlite",
        mlflow_tracking_uri=None,
    )


def use_case_settings(a: BacktestArgs, first: date) -> dict:
    """A non-flagship use case's own settings for the backtest's pipeline (its
    ``<PREFIX>*`` variables, then the dates and the files source of the backtest); the
    flagship's come from :func:`pipeline_settings`."""
    import os

    from ml_platform.use_cases import get_use_case, resolve_settings

    uc = get_use_case(a.use_case)
    if uc.is_flagship:
        return {}
    p = uc.env_prefix
    env = {k: v for k, v in os.environ.items() if k.startswith(p)}
    env |= {
        f"{p}START_DATE": first.isoformat(),
        f"{p}END_DATE": a.test_end.isoformat(),
        f"{p}SOURCE": "files",
        f"{p}SOURCE_DIR": str(a.source.resolve()),
    }
    return {uc.name: resolve_settings(uc, environ=env)}


def materialize(a: BacktestArgs, first: date, workdir: Path) -> Path:
    """Run the use case's Dagster feature pipeline over ``first..test_end`` as one
    single-run backfill on an ephemeral instance; returns the lake directory."""
    import dagster as dg

    from ml_platform.defs import build_definitions, names
    from ml_platform.defs.run import run_job
    from ml_platform.runtime import quiet_telemetry
    from ml_platform.use_cases import get_use_case

    quiet_telemetry()
    s = pipeline_settings(a, first, workdir)
    # only the stages of the job and the assets it selects (no dbt manifest needed)
    stages = (names.INGESTION, names.FEATURES, names.TRAINING)
    defs = build_definitions(
        [a.use_case], settings=s, stages=stages, use_case_settings=use_case_settings(a, first)
    )
    job = get_use_case(a.use_case).qualified(names.FEATURE_PIPELINE_JOB)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_job(
            defs,
            job,
            start=first,
            end=a.test_end,
            instance=instance,
            raise_on_error=False,
            log_level="WARNING",
            log_dir=workdir / "logs",
        )
        if not result.success:
            failures = [_failure_text(e) for e in result.all_events if e.is_failure]
            tail = "\n".join(failures[-15:]) or "no failure event recorded"
            raise RuntimeError(f"feature pipeline failed ({job}):\n{tail}")
    return s.lake_dir


def _failure_text(event) -> str:
    """A failure event as its error (type and message), else its own message."""
    error = getattr(event.event_specific_data, "error", None)
    if error is not None:
        return f"{error.cls_name}: {error.message.strip()}"
    return event.message or event.event_type_value


def protocol_metrics(
    test: pd.DataFrame, score, labeled: pd.DataFrame, a: BacktestArgs, uc: UseCase
) -> dict:
    """The test window's metrics by the use case's protocol: a binary task declaring an
    entity precision (fraud) gets the Quality protocol over the history from the first
    training day; any other task every metric it declares (a regression: and its flag's
    precision and recall)."""
    r = datasets.Roles.of(uc)
    if r.task == "regression":
        return metrics.value_protocol_metrics(test[r.label].to_numpy(), score, use_case=uc)
    entity_precision = [
        m
        for m in uc.spec.task.extra_metrics
        if getattr(m, "function", None) == metrics.ENTITY_PRECISION
    ]
    if not entity_precision:
        return metrics.evaluate(test, score, metrics.task_metrics(uc))
    day = labeled[r.event_time].dt.normalize()
    history = labeled[(day >= pd.Timestamp(a.train_start)) & (day <= pd.Timestamp(a.test_end))]
    return metrics.protocol_metrics(
        test, score, history, first_train_day=a.train_start, label_delay=a.label_delay, use_case=uc
    )


def train_and_score(
    labeled: pd.DataFrame,
    a: BacktestArgs,
    feature_columns: list[str],
    *,
    inner_ok: bool,
    threads: int,
) -> tuple[pd.DataFrame, dict]:
    """Tune on the shifted protocol, refit on the training window, score the test window."""
    from ml_platform.training import models
    from ml_platform.use_cases import get_use_case, resolve_settings

    uc = get_use_case(a.use_case)
    r = datasets.Roles.of(uc)
    # LightGBM must beat the baseline by the use case's margin (fraud: the platform's AP one)
    margin = {} if uc.is_flagship else {"margin_ap": resolve_settings(uc).baseline_margin}
    final = datasets.Windows(a.train_start, a.train_end, a.test_start, a.test_end, a.label_delay)
    train, test = datasets.split(labeled, final, use_case=uc)
    info: dict = {}
    if inner_ok:
        inner = datasets.inner_validation_windows(a.train_start, a.train_end, a.label_delay)
        itrain, ivalid = datasets.split(labeled, inner, use_case=uc)
        cands = models.train_candidates(
            itrain, ivalid, feature_columns, threads=threads, use_case=uc, **margin
        )
        kind, rounds = cands.chosen.kind, cands.lightgbm.best_iteration
        info["validation"] = {
            "window": f"fit {inner.train_start}..{inner.train_end}, "
            f"validate {inner.valid_start}..{inner.valid_end}",
            "baseline": _round(cands.baseline_metrics),
            "lightgbm": _round(cands.lightgbm_metrics or {}),
            "choice": cands.reason,
        }
    else:
        kind, rounds = models.LIGHTGBM, FALLBACK_ROUNDS
        info["validation"] = "none: no files for the window before training; fixed rounds"
    if kind == models.LIGHTGBM:
        model = models.fit_lightgbm(
            train, feature_columns, num_boost_round=rounds, threads=threads, use_case=uc
        )
        info["lightgbm_params"] = {
            k: v for k, v in model.params.items() if k not in ("verbose", "num_threads")
        }
    else:
        model = models.fit_baseline(train, feature_columns, use_case=uc)
    score = model.score(test)
    digest = datasets.dataset_digest(train[[*feature_columns, r.label]])
    version = f"backtest-{kind}-{digest[:12]}"
    info |= {
        "model_kind": kind,
        "model_version": version,
        "num_boost_round": rounds if kind == models.LIGHTGBM else None,
    }
    scored = pd.DataFrame(
        {r.event_id: test[r.event_id].to_numpy(), "score": score, "model_version": version}
    )
    info["test"] = protocol_metrics(test, score, labeled, a, uc)
    return scored, info


class _Stage:
    """Logs a stage's start and its end with seconds; ``seconds`` is kept for the result."""

    def __init__(self, log: Callable[[str], None], name: str) -> None:
        self.log, self.name, self.seconds = log, name, 0.0

    def __enter__(self) -> _Stage:
        self.log(f"{self.name}: started")
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.seconds = time.perf_counter() - self._t0
        outcome = "finished" if exc_type is None else "failed"
        self.log(f"{self.name}: {outcome} in {self.seconds:.1f}s")


def _number(v: float) -> float | None:
    """A metric for the JSON result: 4 decimals; an undefined one (NaN) is null."""
    return round(v, 4) if math.isfinite(v) else None


def _round(m: dict) -> dict:
    return {k: _number(v) for k, v in m.items() if isinstance(v, float)}


def write_scores(scored: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        scored.to_csv(out, index=False)
    else:
        scored.to_parquet(out, index=False)


def run_backtest(
    a: BacktestArgs,
    *,
    threads: int = 2,
    keep_workdir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict:
    """The whole backtest; returns the JSON-able result (test metrics of the protocol)."""
    from ml_platform.defs import names
    from ml_platform.features.definitions import feature_set, horizon_days
    from ml_platform.use_cases import get_use_case

    t0 = time.perf_counter()
    uc = get_use_case(a.use_case)
    validate_args(a)
    lookback = horizon_days(a.label_delay, uc)
    first, inner_ok = plan_range(a, lookback)
    days = [first + timedelta(days=i) for i in range((a.test_end - first).days + 1)]
    with tempfile.TemporaryDirectory(prefix="mlp-backtest-") as tmp:
        workdir = keep_workdir or Path(tmp)
        name = f"feature pipeline (Dagster, {first}..{a.test_end}, {len(days)} days)"
        with _Stage(log, name) as pipeline:
            lake_dir = materialize(a, first, workdir)
        with _Stage(log, "loading labeled features"):
            labeled = datasets.load_labeled(
                lake_dir,
                days,
                use_case=uc,
                features_table=names.lake_table(names.EVENT_FEATURES, uc.name),
                events_table=names.lake_table(names.VALIDATED_EVENTS, uc.name),
            )
    with _Stage(log, "tuning, training and scoring the test window") as modelling:
        scored, info = train_and_score(
            labeled, a, list(feature_set(uc).columns), inner_ok=inner_ok, threads=threads
        )
        write_scores(scored, a.out)
    test = info.pop("test")
    return {
        **{k: (_number(v) if isinstance(v, float) else v) for k, v in test.items()},
        "model_version": info.pop("model_version"),
        "model_kind": info.pop("model_kind"),
        "use_case": a.use_case,
        "train_window": f"{a.train_start}..{a.train_end}",
        "test_window": f"{a.test_start}..{a.test_end}",
        "label_delay": a.label_delay,
        "materialized_days": f"{first}..{a.test_end}",
        "history_days_before_train": (a.train_start - first).days,
        "feature_lookback_days": lookback,
        "rows_materialized": int(len(labeled)),
        **info,
        "out": str(a.out),
        "seconds": {
            "pipeline": round(pipeline.seconds, 1),
            "train_score": round(modelling.seconds, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
    }


def main_json(a: BacktestArgs) -> str:
    return json.dumps(run_backtest(a), indent=2, default=str)
