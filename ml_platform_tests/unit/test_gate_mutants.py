"""The promotion gate: the rule at its edges (floor, margin, first-model baseline, reasons),
then ``run_gate`` against a real MLflow registry: what it scores, records and promotes.

The registry part uses tiny synthetic windows (one informative feature, one noise feature);
its three versions are trained and logged once, then every check runs on a fresh copy of
that registry, so the test stays cheap enough to run for each mutant.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.training import datasets, metrics, models
from ml_platform.training.gate import GateDecision, _float, decide

#: Not fraud's model: the gate acts on the registered model it is given, never a global one.
MODEL = "churn_model"


def _m(auc: float, ap: float) -> dict[str, float]:
    return {"roc_auc": auc, "average_precision": ap}


def test_auc_floor_is_inclusive_and_nan_is_refused():
    at_floor = decide(_m(0.6, 0.5), None, margin_ap=0.01, min_auc=0.6)
    assert at_floor == (True, "first model: AP 0.5000 >= no baseline, AUC 0.6000")
    below = decide(_m(0.59999, 0.9), _m(0.9, 0.1), margin_ap=0.01, min_auc=0.6)
    assert below == (False, "challenger ROC AUC 0.6000 is below the floor 0.6")
    nan = decide(_m(math.nan, 0.9), None, margin_ap=0.01, min_auc=0.0)
    assert nan == (False, "challenger ROC AUC nan is below the floor 0.0")


def test_first_model_against_its_baseline():
    beats = decide(_m(0.8, 0.41), None, margin_ap=0.01, min_auc=0.5, baseline_ap=0.4)
    assert beats == (True, "first model: AP 0.4100 >= baseline AP 0.4000, AUC 0.8000")
    # tags keep 6 decimals: a model equal to its baseline up to that rounding is promoted
    tied = decide(_m(0.8, 0.4 - 5e-7), None, margin_ap=0.01, min_auc=0.5, baseline_ap=0.4)
    assert tied[0] is True
    at_tolerance = decide(_m(0.8, 0.5 - 1e-6), None, margin_ap=0.01, min_auc=0.5, baseline_ap=0.5)
    assert at_tolerance[0] is True
    worse = decide(_m(0.8, 0.4 - 2e-6), None, margin_ap=0.01, min_auc=0.5, baseline_ap=0.4)
    assert worse == (False, "first model: AP 0.4000 does not beat the baseline's 0.4000")
    clearly = decide(_m(0.8, 0.3), None, margin_ap=0.01, min_auc=0.5, baseline_ap=0.45)
    assert clearly == (False, "first model: AP 0.3000 does not beat the baseline's 0.4500")


def test_the_baseline_tolerance_is_inclusive_and_the_floor_optional():
    # 0.0 - 1e-6 is exactly -1e-6: on the tolerance, still matched
    on_edge = decide(_m(0.8, 0.0), None, margin_ap=0.01, min_auc=0.5, baseline_ap=1e-6)
    assert on_edge == (True, "first model: AP 0.0000 >= baseline AP 0.0000, AUC 0.8000")
    # no floor declared: any AUC passes
    assert decide(_m(0.1, 0.5), None, margin_ap=0.01, min_auc=None) == (
        True,
        "first model: AP 0.5000 >= no baseline, AUC 0.1000",
    )


def test_a_task_without_a_gate_metric_decides_on_its_primary_metric_alone(tmp_path):
    """A use case that declares no gate metric: a floor has nothing to bound, and the
    reason names the primary metric only."""
    from ml_platform_tests.unit.test_metrics_mutants import late_flights

    late = late_flights(tmp_path, [])
    first = decide({"average_precision": 0.3}, None, margin_ap=0.01, min_auc=0.9, use_case=late)
    assert first == (True, "first model: AP 0.3000 >= no baseline")


def test_challenger_needs_a_gain_strictly_above_the_margin():
    champion = _m(0.9, 0.5)
    wins = decide(_m(0.9, 0.5201), champion, margin_ap=0.02, min_auc=0.5)
    assert wins == (
        True,
        "challenger AP 0.5201 beats champion 0.5000 by 0.0201 > margin 0.02",
    )
    at_margin = decide(_m(0.9, 0.75), _m(0.9, 0.5), margin_ap=0.25, min_auc=0.5)
    assert at_margin == (
        False,
        "challenger AP 0.7500 vs champion 0.5000: gain 0.2500 <= margin 0.25",
    )
    worse = decide(_m(0.9, 0.4), champion, margin_ap=0.02, min_auc=0.5)
    assert worse == (False, "challenger AP 0.4000 vs champion 0.5000: gain -0.1000 <= margin 0.02")


def test_baseline_is_ignored_once_a_champion_exists():
    d = decide(_m(0.9, 0.6), _m(0.9, 0.5), margin_ap=0.01, min_auc=0.5, baseline_ap=0.99)
    assert d[0] is True


def test_decision_dict_keeps_every_field():
    d = GateDecision(True, "why", "2", "1", "a..b", _m(0.9, 0.5), None)
    assert d.as_dict() == {
        "promote": True,
        "reason": "why",
        "challenger_version": "2",
        "champion_version": "1",
        "window": "a..b",
        "challenger_metrics": {"roc_auc": 0.9, "average_precision": 0.5},
        "champion_metrics": None,
    }


@pytest.mark.parametrize(
    ("tag", "expected"), [("0.25", 0.25), ("", None), (None, None), ("n/a", None)]
)
def test_baseline_tag_parsing(tag, expected):
    assert _float(tag) == expected


WINDOWS = datasets.platform_windows(date(2025, 5, 5), train_days=6, valid_days=4, label_delay=1)
WINDOW = f"{WINDOWS.valid_start}..{WINDOWS.valid_end}"


def _days(start: date, n_days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 60 * n_days
    fraud = (rng.random(n) < 0.2).astype(np.int8)
    return pd.DataFrame(
        {
            "tx_datetime": pd.Timestamp(start)
            + pd.to_timedelta(np.repeat(np.arange(n_days), 60), unit="D")
            + pd.to_timedelta(np.tile(np.arange(60), n_days), unit="min"),
            "customer_id": rng.integers(0, 300, n),
            "signal": fraud + rng.normal(0, 0.6, n),
            "noise": rng.normal(0, 1, n),
            "tx_fraud": fraud,
        }
    )


_SPLIT = (_days(WINDOWS.train_start, 6, seed=1), _days(WINDOWS.valid_start, 4, seed=2))
_TEMPLATE: list[Path] = []  # built once per process (and inherited by forked workers)


def _template() -> Path:
    """A registry holding v1 (signal+noise), v2 (noise only), v3 (signal only).

    Training and logging dominate the cost, so they happen once; each test starts from a
    copy of the SQLite registry (the artifacts are only read, so they stay shared).
    """
    if not _TEMPLATE:
        from ml_platform.features import FEATURE_VERSION
        from ml_platform.settings import get_settings
        from ml_platform.training import registry

        root = Path(tempfile.mkdtemp(prefix="mlp-gate-registry-"))
        train, valid = _SPLIT
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("ML_PLATFORM_DATA_DIR", str(root))
            get_settings.cache_clear()
            for cols in (["signal", "noise"], ["noise"], ["signal"]):
                cands = models.train_candidates(
                    train, valid, cols, margin_ap=0.0, threads=1, lgb_params={"n_estimators": 20}
                )
                registry.log_training_run(
                    cands,
                    train,
                    valid,
                    WINDOWS,
                    model_name=MODEL,
                    use_case="fraud",
                    feature_version=FEATURE_VERSION,
                    as_of="2025-05-05",
                )
        get_settings.cache_clear()
        _TEMPLATE.append(root)
    return _TEMPLATE[0]


def test_gate_decisions_tags_and_promotions(settings_env) -> None:
    from ml_platform.training import registry
    from ml_platform.training.gate import run_gate

    template = _template()
    s = settings_env(gate_min_auc=0.0, promotion_margin_ap=0.02)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / "mlflow.db", s.data_dir / "mlflow.db")
    _, valid = _SPLIT
    registry.delete_alias(registry.CHALLENGER, why="start from an empty gate", model_name=MODEL)

    assert run_gate(valid, WINDOW, model_name=MODEL) == GateDecision(
        False, "no challenger registered", None, None, WINDOW
    )

    # the first model is measured on the window and held to its own baseline
    registry.set_alias(registry.CHALLENGER, "1", why="first candidate", model_name=MODEL)
    first = registry.get_model_info("1", model_name=MODEL)
    decision = run_gate(valid, WINDOW, who="gate-test", model_name=MODEL)
    chal_m = metrics.validation_metrics(
        valid, registry.load_native_model("1", model_name=MODEL)[0].score(valid)
    )
    baseline = float(first.tags["baseline_average_precision"])
    reason = (
        f"first model: AP {chal_m['average_precision']:.4f} >= baseline AP {baseline:.4f}, "
        f"AUC {chal_m['roc_auc']:.4f}"
    )
    assert decision == GateDecision(True, reason, "1", None, WINDOW, chal_m, None)
    assert registry.current_version(registry.CHAMPION, model_name=MODEL) == "1"
    tags = registry.get_model_info("1", model_name=MODEL).tags
    assert {k: v for k, v in tags.items() if k.startswith("gate.")} == {
        "gate.decision": "promoted",
        "gate.reason": reason,
        "gate.window": WINDOW,
        "gate.challenger_ap": f"{chal_m['average_precision']:.6f}",
        "gate.champion_ap": "",
        "gate.champion_version": "",
    }
    assert tags["alias.champion.set_by"] == "gate-test"
    assert tags["alias.champion.why"] == f"gate on {WINDOW}: {reason}"

    # promotion consumed the challenger alias; pointing it at the champion is a no-op
    assert run_gate(valid, WINDOW, model_name=MODEL) == GateDecision(
        False, "no challenger registered", None, "1", WINDOW
    )
    registry.set_alias(registry.CHALLENGER, "1", why="re-check", model_name=MODEL)
    assert run_gate(valid, WINDOW, model_name=MODEL) == GateDecision(
        False, "challenger is already champion", "1", "1", WINDOW
    )

    # a weaker challenger is compared with the champion on the same rows and refused
    registry.set_alias(registry.CHALLENGER, "2", why="weaker candidate", model_name=MODEL)
    refused = run_gate(valid, WINDOW, model_name=MODEL)
    champ_m = metrics.validation_metrics(
        valid, registry.load_native_model("1", model_name=MODEL)[0].score(valid)
    )
    assert not refused.promote and refused.champion_metrics == champ_m
    assert (refused.challenger_version, refused.champion_version) == ("2", "1")
    assert refused.reason.endswith("<= margin 0.02") and "vs champion" in refused.reason
    tags = registry.get_model_info("2", model_name=MODEL).tags
    assert tags["gate.decision"] == "rejected"
    assert tags["gate.champion_ap"] == f"{champ_m['average_precision']:.6f}"
    assert tags["gate.champion_version"] == "1"
    assert registry.current_version(registry.CHAMPION, model_name=MODEL) == "1"

    # a champion whose feature left the window cannot be scored: judged as a first model
    # (the challenger's baseline is not applied then), and the reason says why
    registry.set_alias(
        registry.CHALLENGER, "3", why="candidate without the noise feature", model_name=MODEL
    )
    no_noise = valid.drop(columns="noise")
    moved = run_gate(no_noise, WINDOW, model_name=MODEL)
    assert moved.promote and moved.champion_metrics is None
    assert moved.reason.startswith(
        "champion v1 needs feature noise that no longer exists; first model: AP "
    )
    assert moved.reason.endswith(
        ">= no baseline, AUC " + f"{moved.challenger_metrics['roc_auc']:.4f}"
    )
    assert registry.current_version(registry.CHAMPION, model_name=MODEL) == "3"
    assert (
        registry.get_model_info("3", model_name=MODEL).tags["alias.champion.set_by"]
        == "promotion-gate"
    )
