"""The `ml-platform` command line: help texts, `mlflow-uri`, progress lines on stderr."""

from __future__ import annotations

import argparse
import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from ml_platform.cli import build_parser, main

#: Words of how the code was written, not of the product: never in what a user reads.
# "task" is product vocabulary here (a use case's ML task), so it is not on the list
PROCESS_WORDS = re.compile(r"\bissues?\b|\bowner\b|heavy librar|``", re.IGNORECASE)


def _subparsers_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return dict(_subparsers_action(parser).choices)


def test_every_help_text_is_user_text_with_a_description() -> None:
    parser = build_parser()
    top = parser.format_help()
    assert not PROCESS_WORDS.search(top), top
    assert "Operate the ML platform and its use cases" in top
    action = _subparsers_action(parser)
    summaries = {a.dest: a.help for a in action._choices_actions}
    assert {"backtest", "backtest-retraining", "mlflow-uri", "demo", "dbt"} <= set(summaries)
    for name, sub in action.choices.items():
        text = sub.format_help()
        assert not PROCESS_WORDS.search(text), f"{name}: {text}"
        # `ml-platform <command> --help` starts with the summary `ml-platform --help` lists
        summary = summaries[name]
        assert sub.description.startswith(f"{summary[0].upper()}{summary[1:]}."), name


def test_every_option_of_the_backtests_is_explained() -> None:
    for name in ("backtest", "backtest-retraining"):
        sub = _subparsers(build_parser())[name]
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings}: no help text"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--weeks", "1"], "--weeks: must be at least 2, got 1"),
        (["--weeks", "2", "--drift-after-days", "14"], "--drift-after-days: must be within"),
    ],
)
def test_backtest_retraining_names_the_bad_argument(argv, message, capsys) -> None:
    assert main(["backtest-retraining", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not PROCESS_WORDS.search(err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--customers", "50"], "--customers: a simulator knob; use case flights replays its own"),
        (["--seed", "3"], "--seed: a simulator knob"),
        (["--weeks", "40"], "--weeks: the replay would end 2014-02-02, after the use case's last"),
    ],
)
def test_backtest_retraining_of_flights_refuses_what_its_source_cannot_do(
    argv, message, capsys, tmp_path
) -> None:
    out = tmp_path / "out"
    assert main(["backtest-retraining", "--use-case", "flights", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_mlflow_uri_is_the_store_and_artifact_folder_of_the_settings(settings_env, capsys):
    s = settings_env()
    assert main(["mlflow-uri"]) == 0
    assert capsys.readouterr().out.strip() == f"sqlite:///{s.data_dir / 'mlflow.db'}"
    assert main(["mlflow-uri", "--artifacts"]) == 0
    assert Path(capsys.readouterr().out.strip()) == s.data_dir / "mlartifacts"


def test_mlflow_uri_follows_an_explicit_tracking_uri(settings_env, capsys):
    settings_env(mlflow_tracking_uri="postgresql+psycopg2://postgres@127.0.0.1:5432/mlflow_x")
    assert main(["mlflow-uri"]) == 0
    assert capsys.readouterr().out.strip().endswith("@127.0.0.1:5432/mlflow_x")


def test_progress_goes_to_stderr_so_stdout_stays_the_result(capsys) -> None:
    from ml_platform.cli import _progress

    _progress("backtest")("feature pipeline: started")
    assert capsys.readouterr() == ("", "backtest: feature pipeline: started\n")


def test_backtest_stage_logs_start_and_end_with_seconds() -> None:
    from ml_platform.training.backtest import _Stage

    lines: list[str] = []
    with _Stage(lines.append, "feature pipeline") as stage:
        assert lines == ["feature pipeline: started"]
    assert stage.seconds >= 0
    assert re.fullmatch(r"feature pipeline: finished in \d+\.\ds", lines[1])

    with pytest.raises(RuntimeError), _Stage(lines.append, "training") as failing:
        raise RuntimeError("boom")
    assert lines[-1] == f"training: failed in {failing.seconds:.1f}s"


def test_week_line_names_the_week_its_days_and_each_policy_mean() -> None:
    from ml_platform.monitoring.retraining_backtest import BacktestConfig, _week_line

    cfg = BacktestConfig(replay_days=10, drift_after_days=7)
    replay = [cfg.replay_start + timedelta(days=i) for i in range(cfg.replay_days)]
    rows = []
    for i, day in enumerate(replay):
        rows += [(day, "frozen", 0.5 + i / 100, 1, 10, 1), (day, "weekly", 0.2, 1, 10, 1)]
        rows.append((day, "sensor", float("nan") if i == 0 else 0.4, 1, 10, 1))
        if i == 6:
            first = _week_line(i, replay, rows, cfg, 12.4)
    last = _week_line(9, replay, rows, cfg, 30.0)
    assert first == (
        f"week 1/2 ({replay[0]}..{replay[6]}): mean AP frozen 0.530, weekly 0.200, "
        "sensor 0.400; 12s"
    )
    # a partial last week: its own days only, marked as after the drift
    assert last == (
        f"week 2/2 ({replay[7]}..{replay[9]}, drift): mean AP frozen 0.580, weekly 0.200, "
        "sensor 0.400; 30s"
    )


@pytest.mark.slow
def test_backtest_retraining_reports_each_week_on_stderr_and_ends_stdout_with_json(
    settings_env, tmp_path, capsys
):
    # small and quick: the sensor never fires, so the only retrainings are the two weekly ones
    settings_env(
        retrain_performance_margin=1.0,
        retrain_min_new_labeled_days=1_000_000,
        train_days=7,
        train_threads=1,
    )
    argv = ["backtest-retraining", "--weeks", "2", "--drift-after-days", "7"]
    argv += ["--customers", "100", "--terminals", "200", "--drift-threshold", "1.0"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    assert result["policies"]["weekly"]["retrainings"] == 2
    assert result["policies"]["sensor"]["retrainings"] == 0
    assert result["report"] == str(tmp_path / "retraining_backtest.png")

    progress = err.strip().splitlines()
    assert all(line.startswith("backtest-retraining: ") for line in progress), progress
    assert "started: 100 customers, 200 terminals" in progress[0]
    assert re.fullmatch(r"backtest-retraining: finished in \d+s", progress[-1])
    weeks = [line for line in progress if ": week " in line]
    assert [w.split(" (")[0] for w in weeks] == [
        "backtest-retraining: week 1/2",
        "backtest-retraining: week 2/2",
    ]
    assert all(re.search(r"frozen [\d.]+, weekly [\d.]+, sensor [\d.]+; \d+s$", w) for w in weeks)
    assert sum("weekly: retrain (schedule)" in line for line in progress) == 2
    # stdout is the result only: the weekly table, the summary, the JSON last
    assert not any(line.startswith("backtest-retraining:") for line in out.splitlines())
    first_days = [date.fromisoformat(w.split("(")[1][:10]) for w in weeks]
    assert first_days[1] - first_days[0] == timedelta(days=7)


USE_CASE_CALLS = {
    "demo": ["demo"],
    "backtest": [
        "backtest",
        "--source",
        "src",
        "--train-start",
        "2025-01-01",
        "--train-end",
        "2025-01-07",
        "--test-start",
        "2025-01-15",
        "--test-end",
        "2025-01-21",
        "--out",
        "out",
    ],
    "export-edge": ["export-edge", "edge_pkg"],
}


@pytest.mark.parametrize("command", list(USE_CASE_CALLS))
def test_an_unknown_use_case_is_refused_at_once(command: str, capsys, tmp_path, monkeypatch):
    """Every command about one model names the unknown use case and writes nothing."""
    monkeypatch.chdir(tmp_path)
    assert main([*USE_CASE_CALLS[command], "--use-case", "nope"]) == 2
    assert "use case 'nope': not found" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_console_script_exits_with_the_commands_code_and_its_whole_output() -> None:
    """``ml-platform`` ends without interpreter teardown (native threads could abort a
    finished run): the exit code is the command's and its output is flushed first."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = str(Path(sys.executable).with_name("ml-platform"))
    ok = subprocess.run([script, "use-cases", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert {e["name"] for e in json.loads(ok.stdout)} >= {"fraud", "flights"}
    bad = subprocess.run([script, "demo", "--use-case", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("use case 'nope': not found (known: flights, fraud)")
