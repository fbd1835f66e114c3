"""The retraining decision, in plain Python.

One function, :func:`decide`, is shared by the Dagster retraining sensor (which fills a
:class:`MonitoringState` from the monitoring assets, the registry and the instance) and by
the retraining-policy backtest (which fills it from its own day-by-day replay). So the
policy measured by the backtest is exactly the policy the sensor runs.

Rules, in order (the first that applies wins, and its reason is reported):

1. a retraining run is already in progress -> skip (never two at once);
2. the last retraining was triggered fewer than ``min_days_between_retrains`` data days ago
   -> skip (a rejected challenger must not make the sensor retrain on every tick);
3. no champion yet and labeled days exist -> retrain;
4. share of drifted features above ``drift_share_threshold`` -> retrain;
5. labeled average precision below the champion's reference by ``performance_margin`` ->
   retrain;
6. at least ``min_new_labeled_days`` labeled days newer than the champion's training data
   -> retrain;
7. otherwise skip, with the numbers that were compared.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date

TRIGGERS = (
    "in_progress",
    "cooldown",
    "no_champion",
    "drift",
    "performance",
    "new_labels",
    "none",
)


@dataclass(frozen=True)
class PolicyConfig:
    """Thresholds of the retraining policy (from settings, see :meth:`from_settings`)."""

    drift_share_threshold: float = 0.3
    performance_margin: float = 0.05
    min_new_labeled_days: int = 14
    min_days_between_retrains: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.drift_share_threshold <= 1.0:
            raise ValueError(
                f"drift_share_threshold: must be within [0, 1], got {self.drift_share_threshold}"
            )
        if self.performance_margin < 0:
            raise ValueError(f"performance_margin: must be >= 0, got {self.performance_margin}")
        if self.min_new_labeled_days < 1:
            raise ValueError(f"min_new_labeled_days: must be >= 1, got {self.min_new_labeled_days}")
        if self.min_days_between_retrains < 0:
            raise ValueError(
                f"min_days_between_retrains: must be >= 0, got {self.min_days_between_retrains}"
            )

    @classmethod
    def from_settings(cls, settings: object) -> PolicyConfig:
        return cls(
            drift_share_threshold=settings.drift_share_threshold,
            performance_margin=settings.retrain_performance_margin,
            min_new_labeled_days=settings.retrain_min_new_labeled_days,
            min_days_between_retrains=settings.retrain_min_days_between,
        )


@dataclass(frozen=True)
class MonitoringState:
    """What the policy looks at, as of one data day.

    ``None`` means "not measured" (e.g. no drift report yet) and never triggers a retrain.
    """

    as_of: date
    has_champion: bool = True
    retraining_in_progress: bool = False
    drift_share: float | None = None
    recent_ap: float | None = None
    reference_ap: float | None = None
    new_labeled_days: int = 0
    last_retrain_day: date | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """Run or skip, which rule decided, and a human-readable reason (logged by the sensor)."""

    retrain: bool
    trigger: str
    reason: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def decide(state: MonitoringState, config: PolicyConfig) -> Decision:
    """Apply the rules of the module docstring to ``state``."""
    day = state.as_of.isoformat()
    if state.retraining_in_progress:
        return Decision(False, "in_progress", f"{day}: a retraining run is already in progress")
    if state.last_retrain_day is not None:
        since = (state.as_of - state.last_retrain_day).days
        if since < config.min_days_between_retrains:
            return Decision(
                False,
                "cooldown",
                f"{day}: last retraining triggered {since} day(s) ago "
                f"(< min_days_between_retrains={config.min_days_between_retrains})",
            )
    if not state.has_champion:
        if state.new_labeled_days >= 1:
            return Decision(
                True,
                "no_champion",
                f"{day}: no champion yet and {state.new_labeled_days} labeled day(s) available",
            )
        return Decision(False, "no_champion", f"{day}: no champion yet and no labeled day")
    if state.drift_share is not None and state.drift_share > config.drift_share_threshold:
        return Decision(
            True,
            "drift",
            f"{day}: drifted feature share {state.drift_share:.3f} > "
            f"threshold {config.drift_share_threshold:.3f}",
        )
    if state.recent_ap is not None and state.reference_ap is not None:
        drop = state.reference_ap - state.recent_ap
        if drop > config.performance_margin:
            return Decision(
                True,
                "performance",
                f"{day}: labeled AP {state.recent_ap:.3f} is {drop:.3f} below the champion's "
                f"reference {state.reference_ap:.3f} (margin {config.performance_margin:.3f})",
            )
    if state.new_labeled_days >= config.min_new_labeled_days:
        return Decision(
            True,
            "new_labels",
            f"{day}: {state.new_labeled_days} newly labeled day(s) since the champion's "
            f"training data (>= {config.min_new_labeled_days})",
        )
    return Decision(False, "none", f"{day}: no rule fired ({_describe(state, config)})")


def _describe(state: MonitoringState, config: PolicyConfig) -> str:
    drift = "n/a" if state.drift_share is None else f"{state.drift_share:.3f}"
    ap = "n/a" if state.recent_ap is None else f"{state.recent_ap:.3f}"
    ref = "n/a" if state.reference_ap is None else f"{state.reference_ap:.3f}"
    return (
        f"drift share {drift} <= {config.drift_share_threshold:.3f}; "
        f"labeled AP {ap} vs reference {ref} (margin {config.performance_margin:.3f}); "
        f"{state.new_labeled_days} new labeled day(s) < {config.min_new_labeled_days}"
    )
