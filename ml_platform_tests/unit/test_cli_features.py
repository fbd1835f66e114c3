"""`ml-platform export-source` and `ml-platform features`, run for real on small data.

Fraud: simulated days exported to files, then featured; flights: a few days of the package
exported with their weather, then featured. Stdout must be exactly one JSON line; bad
input one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from ml_platform.cli import main
from ml_platform.data.validation import validate_events
from ml_platform.features.definitions import feature_set
from ml_platform.use_cases import load_use_case
from ml_platform.use_cases.loader import PACKAGE_ROOT

BATCH = PACKAGE_ROOT.parent / "features" / "batch.py"
FRAUD_DAYS = ("2025-04-01", "2025-04-03")


def _json_line(out: str) -> dict:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


@pytest.fixture
def small_fraud(monkeypatch) -> None:
    monkeypatch.setenv("FRAUD_SIM_N_CUSTOMERS", "60")
    monkeypatch.setenv("FRAUD_SIM_N_TERMINALS", "120")


def _export(capsys, out: Path, *argv: str) -> dict:
    assert main(["export-source", "--out", str(out), *argv]) == 0
    return _json_line(capsys.readouterr().out)


def test_fraud_days_exported_then_featured(small_fraud, tmp_path, capsys) -> None:
    start, end = FRAUD_DAYS
    report = _export(capsys, tmp_path / "src", "--start", start, "--end", end)
    names = sorted(p.name for p in (tmp_path / "src").iterdir())
    assert names == ["2025-04-01.parquet", "2025-04-02.parquet", "2025-04-03.parquet"]
    assert report["use_case"] == "fraud" and report["days"] == 3 and report["side_tables"] == {}
    out = tmp_path / "features.parquet"
    assert main(["features", "--source", str(tmp_path / "src"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    result = _json_line(captured.out)
    assert list(result) == ["use_case", "rows", "quarantined", "seconds"]
    assert result["use_case"] == "fraud"
    assert (result["rows"], result["quarantined"]) == (report["rows"], 0)
    assert list(result["seconds"]) == ["read", "features", "write"]
    assert all(v >= 0 for v in result["seconds"].values())
    assert f"{report['rows']} rows featured, 0 quarantined" in captured.err

    written = pd.read_parquet(out)
    assert list(written.columns) == ["transaction_id", *feature_set("fraud").columns]
    from ml_platform.features.batch import build_features

    fraud = load_use_case(PACKAGE_ROOT / "fraud")
    days = [
        validate_events(pd.read_parquet(tmp_path / "src" / f"{d}.parquet"), d, fraud)[0]
        for d in ("2025-04-01", "2025-04-02", "2025-04-03")
    ]
    expected = build_features(pd.concat(days, ignore_index=True), 7, use_case=fraud)
    pd.testing.assert_frame_equal(written, expected)


def test_bad_rows_are_quarantined_counted_and_not_featured(small_fraud, tmp_path, capsys) -> None:
    _export(
        capsys, tmp_path / "src", "--start", "2025-04-01", "--end", "2025-04-02", "--format", "csv"
    )
    day = tmp_path / "src" / "2025-04-02.csv"
    raw = pd.read_csv(day)
    raw.loc[0, "tx_amount"] = -5.0
    raw.loc[1, "customer_id"] = None
    raw.to_csv(day, index=False)
    out = tmp_path / "features.csv"
    assert main(["features", "--source", str(tmp_path / "src"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    result = _json_line(captured.out)
    total = len(raw) + len(pd.read_csv(tmp_path / "src" / "2025-04-01.csv"))
    assert (result["rows"], result["quarantined"]) == (total - 2, 2)
    assert "quarantined: tx_amount: negative: 1" in captured.err
    assert "quarantined: customer_id: null: 1" in captured.err
    written = pd.read_csv(out)
    assert len(written) == total - 2
    assert not set(raw["transaction_id"].iloc[:2]) & set(written["transaction_id"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--use-case", "nope"], "use case 'nope': not found (known: flights, fraud)"),
        (["--out", "features.json"], "--out: features.json: the file must end in .parquet or .csv"),
        (["--source", "empty"], "empty: no daily files (YYYY-MM-DD.parquet or YYYY-MM-DD.csv)"),
        (["--source", "absent"], "absent: no such folder"),
        (
            ["--compute", "local", "--dask-address", "tcp://127.0.0.1:1"],
            "--dask-address: a scheduler address needs --compute dask",
        ),
    ],
)
def test_features_errors_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "2025-04-01.csv").write_text("x\n1\n")
    args = {"--source": "src", "--out": "features.parquet"}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        args[flag] = value
    assert main(["features", *[t for kv in args.items() for t in kv]]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ml-platform features: error: "), lines
    assert message in lines[0]
    assert not (tmp_path / "features.parquet").exists()


def test_fraud_days_featured_on_dask(small_fraud, tmp_path, capsys, dask_client) -> None:
    """``--compute dask --dask-address``: the same file as the local run, bit for bit."""
    from ml_platform.features.sharded import bit_identical

    _export(capsys, tmp_path / "src", "--start", FRAUD_DAYS[0], "--end", FRAUD_DAYS[1])
    written = {}
    for compute in ("local", "dask"):
        out = tmp_path / f"{compute}.parquet"
        argv = ["features", "--source", str(tmp_path / "src"), "--out", str(out)]
        argv += ["--compute", compute]
        if compute == "dask":
            argv += ["--dask-address", dask_client.scheduler.address]
        assert main(argv) == 0
        result = _json_line(capsys.readouterr().out)
        assert list(result) == ["use_case", "rows", "quarantined", "seconds"]
        written[compute] = pd.read_parquet(out)
    assert len(written["dask"]) == result["rows"] > 0
    assert bit_identical(written["local"], written["dask"])


def test_export_source_refuses_a_reversed_range(tmp_path, capsys) -> None:
    argv = ["--start", "2025-04-03", "--end", "2025-04-01"]
    assert main(["export-source", "--out", str(tmp_path), *argv]) == 2
    assert "end: 2025-04-01 is before start 2025-04-03" in capsys.readouterr().err


def test_flights_days_export_with_their_weather(tmp_path, capsys) -> None:
    argv = ["--use-case", "flights", "--start", "2013-03-09", "--end", "2013-03-11"]
    report = _export(capsys, tmp_path / "src", *argv, "--format", "csv")
    flights = load_use_case(PACKAGE_ROOT / "flights")
    load_day = flights.hook("source.py:load_day")
    days = [date(2013, 3, d) for d in (9, 10, 11)]
    assert report == {
        "use_case": "flights",
        "out": str(tmp_path / "src"),
        "days": 3,
        "rows": sum(len(load_day(d)) for d in days),
        "side_tables": {"weather": 3 * 72},
    }
    assert len(list((tmp_path / "src" / "weather").glob("2013-03-*.csv"))) == 3


@pytest.mark.skipif(
    '"asof"' not in BATCH.read_text(),
    reason="the batch engine does not compute as-of joins and per-row label windows yet",
)
def test_flights_days_featured(tmp_path, capsys) -> None:
    """Three days of flights with their weather: what the command writes is the engine's
    features of the source's validated days, the weather joined as of the prediction time."""
    from ml_platform.features.batch import build_features

    argv = ["--use-case", "flights", "--start", "2013-03-09", "--end", "2013-03-11"]
    report = _export(capsys, tmp_path / "src", *argv)
    out = tmp_path / "features.parquet"
    src = str(tmp_path / "src")
    assert main(["features", "--use-case", "flights", "--source", src, "--out", str(out)]) == 0
    result = _json_line(capsys.readouterr().out)
    assert result["use_case"] == "flights"
    assert (result["rows"], result["quarantined"]) == (report["rows"], 0)
    written = pd.read_parquet(out)
    assert list(written.columns) == ["flight_id", *feature_set("flights").columns]
    assert written["flight_id"].is_unique and len(written) == report["rows"]
    assert str(written["flight_id"].dtype) == "int64"  # derived from the id's columns

    flights = load_use_case(PACKAGE_ROOT / "flights")
    days = [date(2013, 3, d) for d in (9, 10, 11)]
    events = pd.concat(
        [validate_events(flights.hook("source.py:load_day")(d), d, flights)[0] for d in days],
        ignore_index=True,
    )
    weather = pd.concat(
        [flights.hook("source.py:load_weather_day")(d) for d in days], ignore_index=True
    )
    expected = build_features(events, use_case=flights, side_tables={"weather": weather})
    pd.testing.assert_frame_equal(written, expected)

    # one flight by hand: its origin's newest observation published by the prediction time
    row = events.iloc[len(events) // 2]
    published = weather["time_hour"] + pd.Timedelta(hours=1)
    seen = weather[(weather["origin"] == row["origin"]) & (published <= row["predict_at"])]
    newest = seen.loc[seen["time_hour"].idxmax()]
    assert row["predict_at"] - (newest["time_hour"] + pd.Timedelta(hours=1)) < pd.Timedelta(hours=3)
    got = written.set_index("flight_id").loc[row["flight_id"]]
    assert got["origin_wind_speed"] == newest["wind_speed"]
    assert got["origin_visibility"] == newest["visib"]
    # and its origin's mean delay over the flights that departed in the 3 hours before
    t = row["predict_at"]
    departed = events[
        (events["origin"] == row["origin"])
        & (events["dep_at"] > t - pd.Timedelta(hours=3))
        & (events["dep_at"] <= t)
    ]
    assert len(departed) > 0
    assert got["origin_mean_delay_3hour"] == pytest.approx(departed["dep_delay"].mean(), abs=1e-9)
