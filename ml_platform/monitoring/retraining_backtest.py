"""Retraining-policy backtest: is automatic retraining worth it under drift?

The simulator runs with its drift switch on (covariate + concept drift from a given day);
the replay walks day by day over weeks of it (twelve by default on the command line) and
compares three policies that all start from the same model:

* ``frozen``  - never retrains;
* ``weekly``  - retrains every seventh day;
* ``sensor``  - retrains when :func:`ml_platform.monitoring.policy.decide` says so, fed with
  the same signals the Dagster retraining sensor reads: the day's drifted-feature share
  (Evidently, :mod:`ml_platform.monitoring.drift`, against the model's training reference),
  the pooled AP of the model's own predictions over the latest labeled days against its
  validation AP, and the number of labeled days newer than its training data.

How it relates to the Dagster assets: it calls the same plain-Python core the assets call
(simulator -> ``build_features`` -> ``training.models.train_candidates`` on
``training.datasets.platform_windows`` -> scoring -> drift / performance -> policy), in one
process and without the lake, MLflow or runs, so ten weeks replay in minutes. A retrained
model replaces the current one only when it passes the same kind of promotion gate
(challenger vs current model on the same newest labeled window, by
``settings.promotion_margin_ap``). Labels are used for retraining only once matured
(``label_delay_days``); the daily AP that scores the policies uses every label (hindsight).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ml_platform.data.contract import TX_DATETIME, TX_FRAUD
from ml_platform.monitoring.policy import Decision, MonitoringState, PolicyConfig, decide

POLICIES = ("frozen", "weekly", "sensor")


@dataclass(frozen=True)
class BacktestConfig:
    """Scale and timing of one backtest (demo scale by default: about 2k transactions/day)."""

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
    promotion_margin_ap: float = 0.005
    gate_min_auc: float = 0.6
    drift_reference_rows: int = 20_000
    threads: int = 2
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        # the first training window must start once the longest feature window is full,
        # or the training reference holds truncated windows that later look like drift
        from ml_platform.features import horizon_days

        need = (
            horizon_days(self.label_delay_days)
            + self.train_days
            + self.valid_days
            + 2 * self.label_delay_days
            + 1
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


@dataclass
class _Model:
    """A deployed model of one policy: its scorer and what the policy needs to know."""

    version: int
    trained_as_of: date
    valid_end: date
    valid_ap: float
    score: Callable[[np.ndarray], np.ndarray]
    reference: pd.DataFrame  # sample of its training features (drift reference)


@dataclass
class BacktestResult:
    daily: pd.DataFrame  # day, policy, average_precision, model_version, n, n_fraud
    decisions: pd.DataFrame  # day, policy, retrain, trigger, reason, promoted
    summary: dict
    png_path: Path | None = None
    csv_path: Path | None = None
    seconds: float = 0.0


def simulate(cfg: BacktestConfig) -> pd.DataFrame:
    """Every simulated day of the backtest, drift switched on at ``cfg.drift_start``."""
    from ml_platform.data.simulator import generate_day

    days = [cfg.first_day + timedelta(days=i) for i in range(cfg.warmup_days + cfg.replay_days)]
    frames = [
        generate_day(
            d,
            seed=cfg.seed,
            n_customers=cfg.n_customers,
            n_terminals=cfg.n_terminals,
            drift_start=cfg.drift_start,
        )
        for d in days
    ]
    return pd.concat(frames, ignore_index=True)


def run_backtest(
    cfg: BacktestConfig,
    out_dir: Path | None = None,
    *,
    log: Callable[[str], None] = lambda _: None,
) -> BacktestResult:
    """Replay ``cfg.replay_days`` days under the three policies; write PNG + CSV to out_dir."""
    from ml_platform.features import FEATURE_COLUMNS, build_features
    from ml_platform.monitoring.drift import compute_drift
    from ml_platform.training.datasets import join_labels, platform_windows, split
    from ml_platform.training.gate import decide as gate_decide
    from ml_platform.training.metrics import average_precision, validation_metrics
    from ml_platform.training.models import train_candidates

    t0 = time.perf_counter()
    cols = list(FEATURE_COLUMNS)
    tx = simulate(cfg)
    feats = build_features(tx, label_delay_days=cfg.label_delay_days)
    data = join_labels(feats, tx)
    data["day"] = data[TX_DATETIME].dt.date
    by_day = {d: g for d, g in data.groupby("day", sort=True)}
    log(
        f"simulated {len(tx):,} transactions over {len(by_day)} days in "
        f"{time.perf_counter() - t0:.1f}s (drift from {cfg.drift_start})"
    )
    versions = iter(range(1, 10_000))

    def train(as_of: date) -> _Model:
        windows = platform_windows(as_of, cfg.train_days, cfg.valid_days, cfg.label_delay_days)
        days = [d for d in windows.train_days + windows.valid_days if d in by_day]
        frame = pd.concat([by_day[d] for d in days], ignore_index=True)
        tr, va = split(frame, windows)
        cands = train_candidates(tr, va, cols, threads=cfg.threads)
        chosen = cands.chosen
        ref = (
            tr[cols]
            .sample(n=min(len(tr), cfg.drift_reference_rows), random_state=0)
            .reset_index(drop=True)
        )
        ref["score"] = chosen.score(ref[cols].to_numpy(dtype=np.float64))
        return _Model(
            version=next(versions),
            trained_as_of=as_of,
            valid_end=windows.valid_end,
            valid_ap=float(cands.chosen_metrics["average_precision"]),
            score=lambda x, m=chosen: m.score(x),
            reference=ref,
        )

    def gate(challenger: _Model, champion: _Model, as_of: date) -> tuple[bool, float, float]:
        """The platform's gate rule (training.gate.decide): both models on the same newest
        labeled window; the challenger must beat the current model's AP by the margin."""
        windows = platform_windows(as_of, cfg.train_days, cfg.valid_days, cfg.label_delay_days)
        va = pd.concat([by_day[d] for d in windows.valid_days if d in by_day], ignore_index=True)
        x = va[cols].to_numpy(dtype=np.float64)
        new = validation_metrics(va, challenger.score(x))
        old = validation_metrics(va, champion.score(x))
        promote, _ = gate_decide(
            new, old, margin_ap=cfg.promotion_margin_ap, min_auc=cfg.gate_min_auc
        )
        return promote, new["average_precision"], old["average_precision"]

    first = train(cfg.replay_start - timedelta(days=1))
    log(f"initial model: validation AP {first.valid_ap:.3f}")
    current = dict.fromkeys(POLICIES, first)
    last_trigger: dict[str, date | None] = dict.fromkeys(POLICIES)
    scored: dict[str, dict[date, tuple[int, np.ndarray]]] = {p: {} for p in POLICIES}
    daily_rows, decision_rows = [], []
    replay = [cfg.replay_start + timedelta(days=i) for i in range(cfg.replay_days)]
    for i, day in enumerate(replay):
        today = by_day[day]
        x = today[cols].to_numpy(dtype=np.float64)
        y = today[TX_FRAUD].to_numpy()
        for policy in POLICIES:
            model = current[policy]
            s = model.score(x)
            scored[policy][day] = (model.version, s)
            daily_rows.append(
                (day, policy, average_precision(y, s), model.version, len(y), int(y.sum()))
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
                )
                decision = decide(state, cfg.policy)
            promoted = None
            if decision.retrain:
                last_trigger[policy] = day
                challenger = train(day)
                promoted, new_ap, old_ap = gate(challenger, model, day)
                if promoted:
                    current[policy] = challenger
                log(
                    f"{day} {policy}: retrain ({decision.trigger}) -> "
                    f"{'promoted' if promoted else 'kept'} (AP {new_ap:.3f} vs {old_ap:.3f})"
                )
            decision_rows.append(
                (day, policy, decision.retrain, decision.trigger, decision.reason, promoted)
            )
        if (i + 1) % 7 == 0 or i == len(replay) - 1:
            log(_week_line(i, replay, daily_rows, cfg, time.perf_counter() - t0))
    daily = pd.DataFrame(
        daily_rows,
        columns=["day", "policy", "average_precision", "model_version", "n", "n_fraud"],
    )
    decisions = pd.DataFrame(
        decision_rows, columns=["day", "policy", "retrain", "trigger", "reason", "promoted"]
    )
    summary = summarise(daily, decisions, cfg)
    result = BacktestResult(daily, decisions, summary, seconds=time.perf_counter() - t0)
    if out_dir is not None:
        write_outputs(result, cfg, Path(out_dir))
    return result


def _week_line(
    i: int, replay: list[date], daily_rows: list[tuple], cfg: BacktestConfig, seconds: float
) -> str:
    """Progress after replay day ``i``: the week's mean daily AP per policy, time so far."""
    first = replay[i - i % 7]
    ap = {p: [r[2] for r in daily_rows if r[0] >= first and r[1] == p] for p in POLICIES}
    means = ", ".join(f"{p} {pd.Series(v, dtype=float).mean():.3f}" for p, v in ap.items())
    drift = ", drift" if first >= cfg.drift_start else ""
    return (
        f"week {i // 7 + 1}/{-(-len(replay) // 7)} ({first}..{replay[i]}{drift}): "
        f"mean AP {means}; {seconds:.0f}s"
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
) -> MonitoringState:
    """What the Dagster sensor would see at the end of ``day`` for this policy's model."""
    from ml_platform.training.metrics import average_precision

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
    recent_ap = None
    if len(own) == cfg.performance_window_days:
        y = np.concatenate([by_day[d][TX_FRAUD].to_numpy() for d in own])
        s = np.concatenate([scored[d][1] for d in own])
        recent_ap = average_precision(y, s) if y.sum() else None
    return MonitoringState(
        as_of=day,
        has_champion=True,
        drift_share=drift.drift_share,
        recent_ap=recent_ap,
        reference_ap=model.valid_ap,
        new_labeled_days=max(0, (matured - model.valid_end).days),
        last_retrain_day=last_trigger,
        extra={"drifted": drift.drifted_features},
    )


def summarise(daily: pd.DataFrame, decisions: pd.DataFrame, cfg: BacktestConfig) -> dict:
    """Mean daily AP before/after the drift and retraining counts, per policy."""
    after = daily[pd.to_datetime(daily["day"]) >= pd.Timestamp(cfg.drift_start)]
    before = daily[pd.to_datetime(daily["day"]) < pd.Timestamp(cfg.drift_start)]
    out: dict[str, dict] = {}
    for policy in POLICIES:
        d = decisions[decisions["policy"] == policy]
        out[policy] = {
            "mean_ap_after_drift": _mean(after, policy),
            "mean_ap_before_drift": _mean(before, policy),
            "retrainings": int(d["retrain"].sum()) if len(d) else 0,
            "promotions": int((d["promoted"] == True).sum()) if len(d) else 0,  # noqa: E712
        }
        if policy == "sensor" and len(d):
            fired = d[d["retrain"]]
            out[policy]["triggers"] = {
                str(k): int(v) for k, v in fired["trigger"].value_counts().items()
            }
    return out


def _mean(frame: pd.DataFrame, policy: str) -> float:
    v = frame.loc[frame["policy"] == policy, "average_precision"].dropna()
    return round(float(v.mean()), 4) if len(v) else float("nan")


def weekly_table(daily: pd.DataFrame, cfg: BacktestConfig) -> pd.DataFrame:
    """Mean daily AP per replay week and policy (the printed table)."""
    week = (pd.to_datetime(daily["day"]) - pd.Timestamp(cfg.replay_start)).dt.days // 7 + 1
    table = daily.assign(week=week).pivot_table(
        index="week", columns="policy", values="average_precision", aggfunc="mean"
    )
    starts = [cfg.replay_start + timedelta(days=7 * (w - 1)) for w in table.index]
    table.insert(0, "from", [s.isoformat() for s in starts])
    table.insert(1, "drift", [s >= cfg.drift_start for s in starts])
    return table[["from", "drift", *POLICIES]].round(3)


def write_outputs(result: BacktestResult, cfg: BacktestConfig, out_dir: Path) -> None:
    """daily_ap.csv, decisions.csv and the PNG of daily AP per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    result.csv_path = out_dir / "daily_ap.csv"
    result.daily.to_csv(result.csv_path, index=False)
    result.decisions.to_csv(out_dir / "decisions.csv", index=False)
    fig, ax = plt.subplots(figsize=(11, 5), dpi=90)
    colors = {"frozen": "tab:gray", "weekly": "tab:blue", "sensor": "tab:green"}
    for policy in POLICIES:
        d = result.daily[result.daily["policy"] == policy]
        days = pd.to_datetime(d["day"])
        smooth = d["average_precision"].rolling(7, min_periods=1).mean()
        ax.plot(days, d["average_precision"], color=colors[policy], alpha=0.25, lw=0.8)
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
                np.full(len(fired), 0.02 + 0.03 * POLICIES.index(policy)),
                marker="^",
                color=colors[policy],
                s=25,
            )
    ax.axvline(pd.Timestamp(cfg.drift_start), color="tab:red", ls="--", label="drift starts")
    ax.set_ylim(0, 1)
    ax.set_ylabel("daily average precision (thin) / 7-day mean (thick)")
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
    "BacktestConfig",
    "BacktestResult",
    "POLICIES",
    "result_json",
    "run_backtest",
    "weekly_table",
]
