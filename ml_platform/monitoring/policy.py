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
5. the labeled primary metric of the champion (fraud: average precision; flights: MAE) worse
   than its reference by more than ``performance_margin``, in the metric's direction (below
   it when higher is better, above it when lower is better) -> retrain;
6. at least ``min_new_labeled_days`` labeled days newer than the champion's training data
   -> retrain;
7. otherwise skip, with the numbers that were compared.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date

from ml_platform.training.metrics import Metric, metric

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
    """Thresholds of the retraining policy (from settings, see :meth:`from_settings`) and
    the primary metric the performance rule compares (default: average precision).

    ``performance_margin`` is in the metric's own unit (AP points, minutes of MAE).
    """

    drift_share_threshold: float = 0.3
    performance_margin: float = 0.05
    min_new_labeled_days: int = 14
    min_days_between_retrains: int = 3
    metric: Metric = field(default_factory=lambda: metric("average_precision"))

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
    def from_settings(cls, settings: object, metric: Metric | None = None) -> PolicyConfig:
        """The thresholds of ``settings`` (the platform's ``Settings`` or a use case's
        resolved settings: both name them alike) for ``metric`` (default: AP)."""
        return cls(
            drift_share_threshold=settings.drift_share_threshold,
            performance_margin=settings.retrain_performance_margin,
            min_new_labeled_days=settings.retrain_min_new_labeled_days,
            min_days_between_retrains=settings.retrain_min_days_between,
            **({} if metric is None else {"metric": metric}),
        )


@dataclass(frozen=True)
class MonitoringState:
    """What the policy looks at, as of one data day.

    ``None`` means "not measured" (e.g. no drift report yet) and never triggers a retrain.
    ``recent_metric``: the champion's primary metric pooled over its latest labeled days;
    ``reference_metric``: the same metric on its validation window (the registry's tag).
    """

    as_of: date
    has_champion: bool = True
    retraining_in_progress: bool = False
    drift_share: float | None = None
    recent_metric: float | None = None
    reference_metric: float | None = None
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
    m = config.metric
    if state.recent_metric is not None and state.reference_metric is not None:
        # how much better the reference is than the recent value, in the metric's direction
        worse = m.gain(state.reference_metric, state.recent_metric)
        if worse > config.performance_margin:
            side = "below" if m.higher_is_better else "above"
            return Decision(
                True,
                "performance",
                f"{day}: labeled {m.short} {state.recent_metric:.3f} is {worse:.3f} {side} the "
                f"champion's reference {state.reference_metric:.3f} "
                f"(margin {config.performance_margin:.3f})",
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
    recent = "n/a" if state.recent_metric is None else f"{state.recent_metric:.3f}"
    ref = "n/a" if state.reference_metric is None else f"{state.reference_metric:.3f}"
    return (
        f"drift share {drift} <= {config.drift_share_threshold:.3f}; "
        f"labeled {config.metric.short} {recent} vs reference {ref} "
        f"(margin {config.performance_margin:.3f}); "
        f"{state.new_labeled_days} new labeled day(s) < {config.min_new_labeled_days}"
    )
