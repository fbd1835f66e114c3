"""The retraining backtest on a use case that is not the flagship: flights' real days.

A short replay (windows shrunk to a week so it runs in seconds) through the real source
reader, validation, features with the weather join, training, the gate and the policy.
What it proves: the days and labels are the source's, the daily metric is MAE, and every
comparison (policy, gate) goes the way "lower is better" says.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pandas as pd
import pytest

from ml_platform.monitoring.policy import PolicyConfig
from ml_platform.monitoring.retraining_backtest import (
    POLICIES,
    BacktestConfig,
    min_warmup_days,
    primary_metric,
    result_json,
    run_backtest,
)

pytestmark = pytest.mark.slow

MAE = primary_metric("flights")
#: no drift trigger, no new-label trigger: only the performance rule (margin 0) decides
POLICY = PolicyConfig(
    drift_share_threshold=1.0,
    performance_margin=0.0,
    min_new_labeled_days=1_000,
    min_days_between_retrains=2,
    metric=MAE,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from datetime import date

    train, valid, delay = 7, 3, 2
    cfg = BacktestConfig(
        first_day=date(2013, 5, 1),
        warmup_days=min_warmup_days("flights", delay, train, valid),
        replay_days=7,
        drift_after_days=3,
        label_delay_days=delay,
        train_days=train,
        valid_days=valid,
        performance_window_days=1,
        promotion_margin=0.05,
        gate_min=None,
        threads=1,
        policy=POLICY,
        use_case="flights",
    )
    lines: list[str] = []
    out = tmp_path_factory.mktemp("flights_retraining")
    return cfg, run_backtest(cfg, out, log=lines.append), lines, out


def test_the_days_and_labels_are_the_sources(run):
    from ml_platform.use_cases.flights.source import load_day

    cfg, result, _, out = run
    daily = result.daily
    assert list(daily.columns) == [
        "day",
        "policy",
        "mean_absolute_error",
        "model_version",
        "n",
        "label_mean",
    ]
    for day in (cfg.replay_start, cfg.last_day):
        source = load_day(day)
        rows = daily[daily["day"] == day]
        assert set(rows["policy"]) == set(POLICIES)
        assert (rows["n"] == len(source)).all()
        assert rows["label_mean"].to_numpy() == pytest.approx(source["dep_delay"].mean())
    assert (out / "daily_mae.csv").exists() and (out / "retraining_backtest.png").exists()
    frozen = daily[daily["policy"] == "frozen"]
    assert frozen["model_version"].nunique() == 1
    assert (daily["mean_absolute_error"] > 0).all()


def test_every_comparison_goes_the_way_lower_is_better_says(run):
    cfg, result, lines, _ = run
    d = result.decisions
    sensor = d[d["policy"] == "sensor"]
    fired = sensor[sensor["retrain"]]
    assert set(fired["trigger"]) <= {"performance"}
    for reason in fired["reason"]:
        found = re.search(
            r"MAE ([\d.]+) is ([\d.]+) above the champion's reference ([\d.]+)", reason
        )
        recent, worse, ref = map(float, found.groups())
        assert recent > ref and worse == pytest.approx(recent - ref, abs=2e-3)
    measured = 0
    for reason in sensor.loc[sensor["trigger"] == "none", "reason"]:
        if "labeled MAE n/a" in reason:  # the model's own days not labeled yet
            continue
        measured += 1
        found = re.search(r"labeled MAE ([\d.]+) vs reference ([\d.]+)", reason)
        recent, ref = map(float, found.groups())
        assert recent <= ref + 1e-3  # not worse: a lower MAE never triggers
    assert measured + len(fired) > 0, "the performance rule never compared anything"
    gates = [line for line in lines if ": retrain (" in line]
    assert gates, "no retraining in the replay: the gate was not exercised"
    for line in gates:
        new, old = map(float, re.search(r"MAE ([\d.]+) vs ([\d.]+)\)", line).groups())
        gain = old - new  # lower is better: the gain is how much the challenger is lower
        if abs(gain - cfg.promotion_margin) > 1e-3:  # printed to 3 decimals
            assert ("-> promoted" in line) == (gain > cfg.promotion_margin), line


def test_the_summary_keeps_the_commands_keys_with_mae_values(run):
    import json

    cfg, result, _, _ = run
    out = json.loads(result_json(result))
    assert set(out) == {"policies", "report"}
    daily = result.daily
    after = pd.to_datetime(daily["day"]) >= pd.Timestamp(cfg.drift_start)
    for policy in POLICIES:
        mine = daily["policy"] == policy
        row = out["policies"][policy]
        assert row["mean_ap_after_drift"] == round(
            daily.loc[mine & after, "mean_absolute_error"].mean(), 4
        )
    assert out["policies"]["frozen"]["retrainings"] == 0


def test_a_policy_scored_by_another_metric_is_refused():
    with pytest.raises(ValueError, match="policy.metric: average_precision, but use case"):
        BacktestConfig(use_case="flights", warmup_days=200)
    with pytest.raises(ValueError, match="warmup_days: 10 is too short"):
        BacktestConfig(use_case="flights", warmup_days=10, policy=replace(POLICY))
