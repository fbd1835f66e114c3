"""`ml-platform backtest-retraining` through the real command on a tiny simulated world.

Two weeks (one before the drift, one after) of 80 customers still train both candidates at
every retraining; one LightGBM thread and a 7-day cooldown keep the three runs to seconds
on a busy machine. The README's promises checked: the files it names, the last printed line
as the JSON object it documents, the same seed giving the same files, and the retraining
counts it prints equal to the decisions it writes.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.cli import main
from ml_platform.monitoring.retraining_backtest import POLICIES, BacktestConfig

pytestmark = pytest.mark.slow

WEEKS, DRIFT_AFTER, CUSTOMERS, TERMINALS, SEED = 2, 7, 80, 160, 4
CFG = BacktestConfig(
    seed=SEED,
    n_customers=CUSTOMERS,
    n_terminals=TERMINALS,
    replay_days=7 * WEEKS,
    drift_after_days=DRIFT_AFTER,
)
SUMMARY_KEYS = {"mean_ap_after_drift", "mean_ap_before_drift", "retrainings", "promotions"}
OUTPUTS = ("daily_ap.csv", "decisions.csv", "retraining_backtest.png")


def _run(out: Path, seed: int = SEED) -> tuple[dict, list[str], list[str]]:
    """The real command; returns the last printed line parsed as JSON, every line of stdout
    and every progress line (stderr)."""
    argv = [
        "backtest-retraining",
        *("--weeks", str(WEEKS), "--drift-after-days", str(DRIFT_AFTER)),
        *("--customers", str(CUSTOMERS), "--terminals", str(TERMINALS)),
        *("--seed", str(seed), "--drift-threshold", "0.9", "--out", str(out)),
    ]
    printed, progress = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(progress):
        assert main(argv) == 0
    lines = printed.getvalue().strip().splitlines()
    return json.loads(lines[-1]), lines, progress.getvalue().splitlines()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, dict, list[str], list[str]]]:
    """The same seed twice and another seed once: each run's folder, JSON and printout."""
    from ml_platform.settings import get_settings

    root = tmp_path_factory.mktemp("retraining")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_PLATFORM_DATA_DIR", str(root / "data"))
        mp.setenv("ML_PLATFORM_TRAIN_THREADS", "1")  # 2 threads on 2 busy cores: 10x slower
        mp.setenv("ML_PLATFORM_RETRAIN_MIN_DAYS_BETWEEN", "7")
        get_settings.cache_clear()
        out = {}
        for name, seed in (("first", SEED), ("again", SEED), ("other", SEED + 2)):
            folder = root / name
            out[name] = (folder, *_run(folder, seed))
        yield out
    get_settings.cache_clear()


def test_prints_the_documented_json_and_writes_the_files(runs):
    folder, result, lines, progress = runs["first"]
    assert set(result) == {"policies", "report"}
    assert set(result["policies"]) == set(POLICIES)
    for policy, row in result["policies"].items():
        expected = SUMMARY_KEYS | ({"triggers"} if policy == "sensor" else set())
        assert set(row) == expected, policy
    assert Path(result["report"]) == folder / "retraining_backtest.png"
    for name in OUTPUTS:
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "retraining_backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = f"{CUSTOMERS} customers, {TERMINALS} terminals, replay {CFG.replay_start}.."
    assert any(header in line for line in progress)

    daily = pd.read_csv(folder / "daily_ap.csv", parse_dates=["day"])
    replay = pd.date_range(CFG.replay_start, CFG.last_day)
    for policy in POLICIES:
        rows = daily[daily["policy"] == policy]
        assert rows["day"].tolist() == replay.tolist(), policy
        # the printed means are the daily AP before/after the drift start
        after = rows["day"] >= pd.Timestamp(CFG.drift_start)
        row = result["policies"][policy]
        assert row["mean_ap_after_drift"] == round(rows.loc[after, "average_precision"].mean(), 4)
        assert row["mean_ap_before_drift"] == round(rows.loc[~after, "average_precision"].mean(), 4)
    assert daily.loc[daily["policy"] == "frozen", "model_version"].nunique() == 1


def test_same_seed_gives_identical_files_another_seed_does_not(runs):
    first, again, other = (runs[k][0] for k in ("first", "again", "other"))
    for name in ("daily_ap.csv", "decisions.csv"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert runs["first"][1]["policies"] == runs["again"][1]["policies"]
    assert (first / "daily_ap.csv").read_bytes() != (other / "daily_ap.csv").read_bytes()


@pytest.mark.parametrize("run", ["first", "other"])
def test_printed_retraining_counts_equal_the_decisions_file(runs, run):
    folder, result, lines, _ = runs[run]
    decisions = pd.read_csv(folder / "decisions.csv", keep_default_na=False, dtype=str)
    assert set(decisions.columns) == {"day", "policy", "retrain", "trigger", "reason", "promoted"}
    assert "frozen" not in set(decisions["policy"])  # it never decides
    assert result["policies"]["frozen"]["retrainings"] == 0
    for policy in ("weekly", "sensor"):
        mine = decisions[decisions["policy"] == policy]
        assert len(mine) == 7 * WEEKS, policy  # one decision per replay day
        fired = mine[mine["retrain"] == "True"]
        row = result["policies"][policy]
        assert row["retrainings"] == len(fired), policy
        assert row["promotions"] == int((fired["promoted"] == "True").sum()), policy
        assert set(mine.loc[mine["retrain"] == "False", "promoted"]) <= {""}
        printed = next(line for line in lines if line.strip().startswith(f"{policy}:"))
        assert f"retrainings {len(fired)}, promotions {row['promotions']}" in printed
        assert (mine["reason"] != "").all()
    sensor = decisions[(decisions["policy"] == "sensor") & (decisions["retrain"] == "True")]
    assert result["policies"]["sensor"]["triggers"] == sensor["trigger"].value_counts().to_dict()
    weekly = decisions[(decisions["policy"] == "weekly") & (decisions["retrain"] == "True")]
    every_7th = [(CFG.replay_start + timedelta(days=d)).isoformat() for d in (6, 13)]
    assert weekly["day"].tolist() == every_7th
