"""`ml-platform backtest` on a small directory of daily files written by the test."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.cli import main
from ml_platform.data.sources import export_days
from ml_platform.settings import Settings

ARGS = [
    "--train-start",
    "2025-03-01",
    "--train-end",
    "2025-03-07",
    "--test-start",
    "2025-03-15",
    "--test-end",
    "2025-03-20",
]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source")
    export_days(
        Settings(sim_n_customers=400, sim_n_terminals=800, sim_seed=9),
        date(2025, 2, 14),
        date(2025, 3, 20),
        out,
    )
    return out


@pytest.mark.slow
def test_backtest_runs_the_pipeline_and_scores_every_test_transaction(source, tmp_path, capsys):
    out = tmp_path / "scores.parquet"
    assert (
        main(["backtest", "--source", str(source), *ARGS, "--label-delay", "7", "--out", str(out)])
        == 0
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    progress = [line for line in captured.err.splitlines() if line.startswith("backtest: ")]
    pipeline = "backtest: feature pipeline (Dagster, 2025-02-14..2025-03-20, 35 days)"
    assert progress[0] == f"{pipeline}: started"
    assert re.fullmatch(rf"{re.escape(pipeline)}: finished in \d+\.\ds", progress[1])
    assert re.fullmatch(r"backtest: tuning, .*: finished in \d+\.\ds", progress[-1])
    for key in ("roc_auc", "average_precision", "card_precision_at_100", "model_version"):
        assert key in result
    assert 0.5 < result["roc_auc"] <= 1.0
    assert result["materialized_days"].startswith("2025-02-14")  # history used for validation
    assert "fit 2025-02-15..2025-02-21" in result["validation"]["window"]

    scores = pd.read_parquet(out)
    assert list(scores.columns) == ["transaction_id", "score", "model_version"]
    test_ids = pd.concat(
        pd.read_parquet(source / f"2025-03-{d}.parquet")["transaction_id"] for d in range(15, 21)
    )
    assert sorted(scores["transaction_id"]) == sorted(test_ids)
    assert len(scores) == result["n_test_transactions"]
    assert scores["score"].between(0, 1).all()
    assert (scores["model_version"] == result["model_version"]).all()
    assert result["n_scored_after_protocol"] <= result["n_test_transactions"]


@pytest.mark.parametrize(
    ("change", "flag", "message"),
    [
        ({"--train-end": "2025-02-20"}, "--train-end", "before --train-start"),
        ({"--test-start": "2025-03-05"}, "--test-start", "overlaps"),
        ({"--test-start": "2025-03-10"}, "--test-start", "--label-delay"),
        ({"--test-end": "2025-03-25"}, "--source", "2025-03-21"),
        ({"--out": "scores.txt"}, "--out", ".parquet or .csv"),
    ],
)
def test_bad_arguments_give_a_clear_error(source, tmp_path, capsys, change, flag, message):
    argv = dict(zip(ARGS[::2], ARGS[1::2], strict=True)) | {"--out": str(tmp_path / "s.csv")}
    argv |= change
    flat = [x for kv in argv.items() for x in kv]
    assert main(["backtest", "--source", str(source), *flat]) == 2
    err = capsys.readouterr().err
    assert flag in err and message in err


def test_missing_day_inside_the_windows_is_named(source, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in source.glob("*.parquet"):
        if f.name != "2025-03-17.parquet":
            (partial / f.name).symlink_to(f)
    assert (
        main(["backtest", "--source", str(partial), *ARGS, "--out", str(tmp_path / "s.csv")]) == 2
    )
    assert "2025-03-17" in capsys.readouterr().err
