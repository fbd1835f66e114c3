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
    assert parity["decision_agreement"] >= 0.9


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

    from ml_platform.defs.serving.assets import edge_package

    p, champion, _ = registered
    with support.platform_env(p.data_dir):
        result = dg.materialize([edge_package], instance=dg.DagsterInstance.ephemeral())
        assert result.success
        meta = result.asset_materializations_for_node("edge_package")[0].metadata
        assert meta["model_version"].value == champion
        assert meta["ap_loss"].value <= 0.005
        out = Path(meta["path"].value)
        assert out == p.data_dir / "edge" and (out / "model.onnx").exists()
        assert json.loads((out / "parity.json").read_text())["passed"]
