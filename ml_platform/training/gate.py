"""The promotion gate: challenger vs champion on the same most recent labelled window.

Each model is scored on the same rows (not each on its own validation window), so the
comparison is fair. The challenger becomes champion when its primary metric (fraud: average
precision) beats the champion's by the promotion margin, in the metric's direction (for a
"lower is better" metric such as MAE, by being lower); the very first model is promoted when
it is at least as good as the linear baseline of its own training run. A model on the wrong
side of the declared gate metric's bound (fraud: ROC AUC below 0.6) is never promoted.
Every decision, promoted or not, is written to the challenger version's tags (``gate.*``)
so "why not" is always on record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from ml_platform.training import metrics
from ml_platform.use_cases.loader import UseCase


@dataclass
class GateDecision:
    promote: bool
    reason: str
    challenger_version: str | None
    champion_version: str | None
    window: str
    challenger_metrics: dict[str, float] | None = None
    champion_metrics: dict[str, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    challenger_metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    *,
    margin_ap: float,
    min_auc: float | None,
    baseline_ap: float | None = None,
    use_case: UseCase | None = None,
) -> tuple[bool, str]:
    """The rule itself, on metrics measured on one window (pure, for tests and the asset).

    ``margin_ap``: the margin on the task's primary metric (fraud: average precision);
    ``min_auc``: the bound of its gate metric (fraud: ROC AUC; a ceiling when lower is
    better; None: no bound); ``baseline_ap``: the baseline's primary metric in training.
    """
    task = metrics.task_metrics(use_case)
    pm, gm = task.primary, task.gate
    value = challenger_metrics[pm.name]
    if gm is not None and min_auc is not None:
        g = challenger_metrics[gm.name]
        if not gm.within(g, min_auc):
            side = "below the floor" if gm.higher_is_better else "above the ceiling"
            return False, f"challenger {gm.long} {g:.4f} is {side} {min_auc}"
    if champion_metrics is None:
        # tags keep 6 decimals: a baseline within 1e-6 counts as matched
        if baseline_ap is not None and pm.gain(value, baseline_ap) < -1e-6:
            return False, (
                f"first model: {pm.short} {value:.4f} does not beat the baseline's "
                f"{baseline_ap:.4f}"
            )
        ref = f"baseline {pm.short} {baseline_ap:.4f}" if baseline_ap is not None else "no baseline"
        extra = f", {gm.short} {challenger_metrics[gm.name]:.4f}" if gm else ""
        return True, f"first model: {pm.short} {value:.4f} {pm.at_least} {ref}{extra}"
    old = champion_metrics[pm.name]
    gain = pm.gain(value, old)
    if gain > margin_ap:
        return True, (
            f"challenger {pm.short} {value:.4f} beats champion "
            f"{old:.4f} by {gain:.4f} > margin {margin_ap}"
        )
    return False, (
        f"challenger {pm.short} {value:.4f} vs champion {old:.4f}: "
        f"gain {gain:.4f} <= margin {margin_ap}"
    )


def run_gate(
    window: pd.DataFrame,
    window_label: str,
    *,
    model_name: str,
    who: str = "promotion-gate",
    use_case: UseCase | None = None,
    margin: float | None = None,
    bound: float | None = None,
) -> GateDecision:
    """Score challenger and champion of ``model_name`` (a use case's registered model) on
    ``window`` (features + labels), decide, record, act.

    ``use_case`` (default: the flagship) gives the metrics and their direction; ``margin``
    and ``bound`` the promotion margin and the gate metric's bound (default: the platform's
    ``promotion_margin_ap`` and ``gate_min_auc``, the flagship's)."""
    from ml_platform.settings import get_settings
    from ml_platform.training import registry

    s = get_settings()
    margin = s.promotion_margin_ap if margin is None else margin
    bound = s.gate_min_auc if bound is None and use_case is None else bound
    pm = metrics.task_metrics(use_case).primary
    short = pm.short.lower().replace(" ", "_")
    chal_v = registry.current_version(registry.CHALLENGER, model_name=model_name)
    champ_v = registry.current_version(registry.CHAMPION, model_name=model_name)
    if chal_v is None:
        return GateDecision(False, "no challenger registered", None, champ_v, window_label)
    if chal_v == champ_v:
        return GateDecision(False, "challenger is already champion", chal_v, champ_v, window_label)
    challenger, chal_info = registry.load_native_model(chal_v, model_name=model_name)
    chal_m = metrics.validation_metrics(window, challenger.score(window), use_case=use_case)
    champ_m = None
    note = ""
    if champ_v is not None:
        champion, champ_info = registry.load_native_model(champ_v, model_name=model_name)
        missing = [c for c in champ_info.feature_columns if c not in window.columns]
        if missing:
            note = f"champion v{champ_v} needs feature {missing[0]} that no longer exists; "
        else:
            champ_m = metrics.validation_metrics(window, champion.score(window), use_case=use_case)
    baseline = _float(chal_info.tags.get(f"baseline_{pm.name}"))
    rule = {"margin_ap": margin, "min_auc": bound, "use_case": use_case}
    if champ_v is None:
        promote, reason = decide(chal_m, None, baseline_ap=baseline, **rule)
    elif champ_m is None:
        promote, reason = decide(chal_m, None, **rule)
        reason = note + reason
    else:
        promote, reason = decide(chal_m, champ_m, **rule)
    decision = GateDecision(promote, reason, chal_v, champ_v, window_label, chal_m, champ_m)
    registry.tag_version(
        chal_v,
        {
            "gate.decision": "promoted" if promote else "rejected",
            "gate.reason": reason,
            "gate.window": window_label,
            f"gate.challenger_{short}": f"{chal_m[pm.name]:.6f}",
            f"gate.champion_{short}": f"{champ_m[pm.name]:.6f}" if champ_m else "",
            "gate.champion_version": champ_v or "",
        },
        model_name=model_name,
    )
    if promote:
        registry.promote(
            chal_v, model_name=model_name, who=who, why=f"gate on {window_label}: {reason}"
        )
    return decision


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None
