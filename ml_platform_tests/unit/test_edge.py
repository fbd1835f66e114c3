"""Edge package: export from the registry's champion, parity, standalone predictor, CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
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


def test_standalone_predictor_needs_no_platform(registered, package, tmp_path: Path) -> None:
    """predictor.py runs with numpy + onnxruntime only and matches the full model."""
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.serving.edge import _OnnxScorer

    p, _, _ = registered
    out, parity = package
    day = p.features[p.features["tx_datetime"].dt.date.astype(str) == parity["report_days"][-1]]
    rows = day[FEATURE_COLUMNS].head(40)
    features_csv = tmp_path / "features.csv"
    rows.to_csv(features_csv, index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.17g")
    script = (
        "import sys, json, runpy\n"
        "sys.argv = ['predictor.py', sys.argv[1], sys.argv[2]]\n"
        "runpy.run_path('predictor.py', run_name='__main__')\n"
    )
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
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(out), str(features_csv)],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
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
