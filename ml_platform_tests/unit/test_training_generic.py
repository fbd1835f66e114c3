"""Training, metrics and the gate read the task a use case declares, regression included.

A throw-away delay use case (a numeric label in minutes, MAE to minimise, RMSE bounded from
above, a "late" flag over 15 minutes) is declared in ``tmp_path`` and loaded by the real
loader; candidates are trained on synthetic rows whose label is a non-linear (or a linear)
function of the features, so which candidate ships is known in advance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from ml_platform.training import datasets, gate, metrics, models
from ml_platform.use_cases import UseCase, load_use_case
from ml_platform.use_cases.loader import USE_CASE_FILE

LATE_AFTER = 15.0
RMSE_CEILING = 30.0
MARGIN = 0.25  # exact in binary: the strict-margin cases below are exact


def _delays() -> dict[str, Any]:
    """A departure-delay use case: string keys, a regression label known a day later."""
    return {
        "name": "delays",
        "service": "delays_service:Delays",
        "schema": {
            "event_id": {"column": "flight", "type": "string"},
            "event_time": "departs",
            "entities": {"origin": "string"},
            "values": {"distance": "float", "load": "float"},
            "request": ["flight", "departs", "origin", "distance", "load"],
        },
        "label": {"column": "delay", "task": "regression", "delay_days": 1},
        "features": [
            {"kind": "row", "name": "distance_km", "function": "value", "of": "distance"},
            {"kind": "row", "name": "load_share", "function": "value", "of": "load"},
        ],
        "task": {
            "candidates": ["linear_regression", "lightgbm"],
            "primary_metric": {"name": "mean_absolute_error", "direction": "minimize"},
            "extra_metrics": ["root_mean_squared_error", "r2"],
            "gate_metric": "root_mean_squared_error",
            "decision": {"kind": "value_and_flag", "flag": "late", "above": LATE_AFTER},
        },
        "source": {"default": "files"},
        "settings": {"start_date": "2025-04-01", "end_date": "2025-04-30", "gate_min": 30.0},
    }


def _write(root: Path, spec: dict[str, Any]) -> UseCase:
    folder = root / spec["name"]
    folder.mkdir()
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_use_case(folder)


@pytest.fixture(scope="module")
def delays(tmp_path_factory) -> UseCase:
    return _write(tmp_path_factory.mktemp("use_cases"), _delays())


@pytest.fixture(scope="module")
def late(tmp_path_factory) -> UseCase:
    """The same flights as a binary task with its own entity precision (per origin)."""
    spec = _delays() | {"name": "late"}
    spec["label"] = {"column": "was_late", "task": "binary", "delay_days": 1}
    spec["task"] = {
        "candidates": ["logistic_regression"],
        "primary_metric": {"name": "average_precision", "direction": "maximize"},
        "extra_metrics": [
            {
                "name": "origin_hits_at_1",
                "function": "entity_precision_at_k",
                "entity": "origin",
                "k": 1,
            }
        ],
        "decision": {"kind": "threshold"},
    }
    spec["settings"] = {k: v for k, v in spec["settings"].items() if k != "gate_min"}
    return _write(tmp_path_factory.mktemp("use_cases"), spec)


FEATURES = ["distance_km", "load_share"]
#: Fewer boosting rounds for a lean test (the objective and early stopping stay the task's).
FAST = {"learning_rate": 0.2}


def _flights(n: int, seed: int, *, linear: bool) -> pd.DataFrame:
    """Rows with the declared columns; the delay is a step-and-wave function of the features
    (linear: a straight line), plus noise."""
    rng = np.random.default_rng(seed)
    distance = rng.uniform(0, 1000, n)
    load = rng.uniform(0, 1, n)
    if linear:
        delay = 0.02 * distance + 10 * load
    else:
        delay = 40.0 * (load > 0.7) + 20.0 * np.sin(distance / 80.0)
    return pd.DataFrame(
        {
            "flight": [f"f{seed}-{i}" for i in range(n)],
            "departs": pd.Timestamp("2025-04-01") + pd.to_timedelta(np.arange(n), unit="min"),
            "origin": rng.choice(["EWR", "JFK", "LGA"], n),
            "distance": distance,
            "load": load,
            "delay": delay + rng.normal(0, 2.0, n),
            "distance_km": distance,
            "load_share": load,
        }
    )


def test_lightgbm_beats_the_linear_baseline_only_on_a_non_linear_signal(delays: UseCase) -> None:
    train, valid = _flights(1500, 1, linear=False), _flights(500, 2, linear=False)
    c = models.train_candidates(
        train, valid, FEATURES, margin_ap=MARGIN, lgb_params=FAST, use_case=delays
    )
    assert c.baseline.kind == models.REGRESSION_BASELINE == "linear_regression"
    assert c.chosen is c.lightgbm and c.chosen.kind == models.LIGHTGBM
    assert c.lightgbm.params["objective"] == "l1" and c.lightgbm.params["metric"] == "l1"
    assert "scale_pos_weight" not in c.lightgbm.params
    gbm, base = c.lightgbm_metrics, c.baseline_metrics
    assert gbm["mean_absolute_error"] < base["mean_absolute_error"] - MARGIN
    assert gbm["r2"] > base["r2"]
    assert c.reason.startswith("lightgbm MAE beats the baseline by")
    assert c.chosen_metrics == gbm
    # a regression predicts values, not probabilities: far outside [0, 1]
    assert c.chosen.score(valid).max() > 30 and c.baseline.score(valid).max() > 30

    train, valid = _flights(1500, 3, linear=True), _flights(500, 4, linear=True)
    c = models.train_candidates(
        train, valid, FEATURES, margin_ap=MARGIN, lgb_params=FAST, use_case=delays
    )
    assert c.chosen is c.baseline and "the baseline ships" in c.reason
    assert c.baseline_metrics["mean_absolute_error"] < 1.7  # the noise's: 2 * sqrt(2 / pi)


def test_the_late_flag_is_the_declared_bound_and_strict(delays: UseCase) -> None:
    train, valid = _flights(300, 5, linear=True), _flights(100, 6, linear=True)
    c = models.train_candidates(train, valid, FEATURES, use_case=delays)
    assert (c.threshold, c.flag) == (LATE_AFTER, "late")
    out = c.decide(np.array([14.9, 15.0, 15.1, -3.0]))
    assert out["late"].tolist() == [False, False, True, False]
    assert out["value"].tolist() == [14.9, 15.0, 15.1, -3.0]
    with pytest.raises(ValueError, match=r"^train\.delay: 1 values not finite"):
        gap = train.assign(delay=train["delay"].where(train.index > 0))
        models.fit_baseline(gap, FEATURES, use_case=delays)
    # a binary task alerts from its threshold on (>=), with no value output
    assert models.decision(np.array([0.4, 0.5]), 0.5) == {"alert": pytest.approx([False, True])}


def test_regression_metrics_match_sklearn_and_know_their_direction(delays: UseCase) -> None:
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    y, p = rng.normal(10, 5, 200), rng.normal(10, 5, 200)
    assert metrics.mean_absolute_error(y, p) == pytest.approx(sk.mean_absolute_error(y, p))
    rmse = np.sqrt(sk.mean_squared_error(y, p))
    assert metrics.root_mean_squared_error(y, p) == pytest.approx(rmse)
    assert metrics.r2(y, p) == pytest.approx(sk.r2_score(y, p))
    assert np.isnan(metrics.r2(np.ones(3), p[:3]))  # undefined on a constant label
    directions = {n: metrics.metric(n).direction for n in ("mean_absolute_error", "r2")}
    assert directions == {"mean_absolute_error": "minimize", "r2": "maximize"}
    with pytest.raises(ValueError, match="'roc_auc': not a regression metric"):
        metrics.metric("roc_auc", "regression")

    frame = pd.DataFrame({"delay": y})
    got = metrics.evaluate(frame, p, metrics.task_metrics(delays))
    assert list(got)[:3] == ["mean_absolute_error", "root_mean_squared_error", "r2"]
    assert got["root_mean_squared_error"] == pytest.approx(rmse)
    assert got["n_rows"] == 200 and got["label_mean"] == pytest.approx(y.mean())


def _m(mae: float, rmse: float = 10.0) -> dict[str, float]:
    return {"mean_absolute_error": mae, "root_mean_squared_error": rmse}


def test_the_gate_promotes_a_lower_error_beyond_the_strict_margin(delays: UseCase) -> None:
    def decide(chal, champ, **kw):
        return gate.decide(chal, champ, margin_ap=MARGIN, min_auc=RMSE_CEILING, **kw, **uc)

    uc = {"use_case": delays}
    champion = _m(10.0)
    exact, reason = decide(_m(10.0 - MARGIN), champion)
    assert not exact and "gain 0.2500 <= margin 0.25" in reason
    better, reason = decide(_m(10.0 - 2 * MARGIN), champion)
    assert better and reason.startswith("challenger MAE 9.5000 beats champion 10.0000 by 0.5")
    worse, reason = decide(_m(10.5), champion)
    assert not worse and "gain -0.5000" in reason

    at_ceiling, _ = decide(_m(5.0, RMSE_CEILING), None)
    assert at_ceiling
    above, reason = decide(_m(5.0, RMSE_CEILING + 0.01), None)
    assert not above and reason == "challenger RMSE 30.0100 is above the ceiling 30.0"

    first, reason = decide(_m(9.0), None, baseline_ap=10.0)
    assert first and reason == "first model: MAE 9.0000 <= baseline MAE 10.0000, RMSE 10.0000"
    behind, reason = decide(_m(11.0), None, baseline_ap=10.0)
    assert not behind and "does not beat the baseline's 10.0000" in reason


def test_datasets_read_the_declared_columns_and_keep_a_numeric_label(delays: UseCase) -> None:
    roles = datasets.Roles.of(delays)
    assert roles.label_columns == ["flight", "departs", "origin", "distance", "load", "delay"]
    rows = _flights(4, 7, linear=True)
    rows["delay"] = [2.5, -1.25, 0.0, 30.75]
    features = rows[["flight", *FEATURES]].iloc[::-1]
    joined = datasets.join_labels(features, rows[roles.label_columns], use_case=delays)
    assert joined["delay"].tolist() == [2.5, -1.25, 0.0, 30.75]  # sorted by time, not cast
    assert joined["delay"].dtype == np.float64
    with pytest.raises(ValueError, match=r"^features\.flight: column required"):
        datasets.join_labels(rows[FEATURES], rows, use_case=delays)


def test_entity_precision_reads_the_declared_entity_and_label(late: UseCase) -> None:
    day = pd.Timestamp("2025-04-02")
    frame = pd.DataFrame(
        {
            "departs": [day, day, day, day + pd.Timedelta(days=1)],
            "origin": ["EWR", "EWR", "JFK", "JFK"],
            "was_late": [0, 1, 0, 1],
        }
    )
    score = np.array([0.9, 0.1, 0.5, 0.2])
    task = metrics.task_metrics(late)
    got = metrics.evaluate(frame, score, task)
    # day 1: EWR (highest 0.9, a late flight among its rows) tops; day 2: JFK (late)
    assert got["origin_hits_at_1"] == 1.0
    assert set(got) == {"average_precision", "origin_hits_at_1", "n_transactions", "n_frauds"}
    assert task.gate is None and not models.decision(score, 0.5)["alert"][1]
    wider = metrics.validation_metrics(frame, score, k=2, use_case=late)
    assert wider["origin_hits_at_2"] == pytest.approx((1 / 2 + 1 / 2) / 2)  # JFK 0 on day 1
    alerts = metrics.protocol_alerts(frame, score, k=1, use_case=late)
    assert alerts[["origin", "was_late"]].values.tolist() == [["EWR", 1], ["JFK", 1]]


def test_the_point_in_time_proof_shifts_a_numeric_label(delays: UseCase) -> None:
    rows = _flights(6, 8, linear=True).assign(
        departs=pd.date_range("2025-04-01", periods=6, freq="D")
    )

    def honest(tx: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
        return tx[["flight", "distance_km"]]

    def own_label(tx: pd.DataFrame, label_delay_days: int) -> pd.DataFrame:
        return tx[["flight"]].assign(own_delay=tx["delay"])

    cutoff = pd.Timestamp("2025-04-04 12:00")
    datasets.check_point_in_time(honest, rows, cutoff, 1, use_case=delays)
    with pytest.raises(datasets.LeakageError, match="^features depend on labels not yet matured"):
        datasets.check_point_in_time(own_label, rows, cutoff, 1, use_case=delays)
