"""MLflow registry: lineage on every run, the promotion gate, promote/rollback with who/why/when."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.simulator import generate_days
from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION, build_features
from ml_platform.training import datasets, models
from ml_platform.use_cases import get_use_case

#: The fraud use case's registered model (``fraud_detector``).
MODEL = get_use_case("fraud").model_name

WINDOWS = datasets.platform_windows(date(2025, 5, 5), train_days=10, valid_days=7, label_delay=7)


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    tx = generate_days(
        date(2025, 4, 1), date(2025, 5, 5), seed=5, n_customers=500, n_terminals=1000
    )
    return datasets.split(datasets.join_labels(build_features(tx), tx), WINDOWS)


def _log(split, cols=FEATURE_COLUMNS, margin=0.005):
    from ml_platform.training import registry

    train, valid = split
    cands = models.train_candidates(train, valid, list(cols), margin_ap=margin, threads=1)
    info = registry.log_training_run(
        cands,
        train,
        valid,
        WINDOWS,
        model_name=MODEL,
        use_case="fraud",
        feature_version=FEATURE_VERSION,
        as_of="2025-05-05",
    )
    return info, cands


def test_training_run_records_full_lineage(settings_env, split):
    import mlflow

    from ml_platform.training import registry

    settings_env()
    info, cands = _log(split)
    assert info.version == "1" and info.aliases == ["challenger"]
    assert info.feature_version == FEATURE_VERSION and info.feature_columns == FEATURE_COLUMNS
    assert info.threshold == pytest.approx(cands.threshold)

    run = mlflow.MlflowClient().get_run(info.run_id)
    tags, params, run_metrics = run.data.tags, run.data.params, run.data.metrics
    assert MODEL == "fraud_detector" and info.name == MODEL
    assert tags["use_case"] == "fraud" and info.tags["use_case"] == "fraud"
    assert mlflow.MlflowClient().get_experiment(run.info.experiment_id).name == MODEL
    assert tags["git_commit"] and tags["git_commit"] != ""
    assert tags["feature_version"] == FEATURE_VERSION
    assert tags["package.lightgbm"] and tags["package.mlflow"]
    assert tags["train_window"] == f"{WINDOWS.train_start}..{WINDOWS.train_end}"
    assert params["model_kind"] == cands.chosen.kind and "window.label_delay" in params
    assert {
        "valid_roc_auc",
        "valid_average_precision",
        "valid_card_precision_at_100",
        "baseline_average_precision",
    } <= set(run_metrics)
    contexts = {}
    for ds_input in run.inputs.dataset_inputs:
        tag = {t.key: t.value for t in ds_input.tags}
        contexts[tag["mlflow.data.context"]] = (ds_input.dataset.digest, tag["window"])
    train, _ = split
    assert contexts["training"][0] == datasets.dataset_digest(train[[*FEATURE_COLUMNS, "tx_fraud"]])
    assert contexts["training"][1] == f"{WINDOWS.train_start}..{WINDOWS.train_end}"
    assert "validation" in contexts

    model_info = mlflow.models.get_model_info(f"models:/{info.name}/{info.version}")
    assert model_info.signature is not None and model_info.saved_input_example_info is not None
    assert [c.name for c in model_info.signature.inputs] == FEATURE_COLUMNS

    for key in ("set_by", "why", "set_at"):
        assert info.tags[f"alias.challenger.{key}"]

    native, loaded = registry.load_native_model("challenger", model_name=MODEL)
    _, valid = split
    np.testing.assert_allclose(native.score(valid), cands.chosen.score(valid), rtol=1e-12)
    assert native.predict_proba(valid[FEATURE_COLUMNS].to_numpy()[:2]).shape == (2, 2)
    assert loaded.version == "1"


def test_gate_never_promotes_below_the_auc_floor(settings_env, split):
    """First model or challenger beating the champion: under GATE_MIN_AUC it stays out."""
    from ml_platform.training import registry
    from ml_platform.training.gate import run_gate

    _, valid = split
    window = f"{WINDOWS.valid_start}..{WINDOWS.valid_end}"
    settings_env(gate_min_auc=1.0)
    weak, _ = _log(split, cols=["tx_amount", "tx_during_night"], margin=1.0)  # the baseline
    first = run_gate(valid, window, model_name=MODEL)
    assert not first.promote and "below the floor 1.0" in first.reason
    assert first.challenger_metrics["roc_auc"] < 1.0
    assert registry.current_version("champion", model_name=MODEL) is None
    assert (
        registry.get_model_info(weak.version, model_name=MODEL).tags["gate.decision"] == "rejected"
    )

    # same challenger, floor lowered: promoted as a first model exactly at its baseline's AP
    settings_env(gate_min_auc=0.5)
    again = run_gate(valid, window, model_name=MODEL)
    assert again.promote and "first model" in again.reason
    assert registry.current_version("champion", model_name=MODEL) == weak.version

    good, _ = _log(split)
    settings_env(gate_min_auc=1.0, promotion_margin_ap=0.0)
    beaten = run_gate(valid, window, model_name=MODEL)
    gain = (
        beaten.challenger_metrics["average_precision"]
        - beaten.champion_metrics["average_precision"]
    )
    assert gain > 0.0 and not beaten.promote and "below the floor" in beaten.reason
    assert registry.current_version("champion", model_name=MODEL) == weak.version
    assert (
        registry.get_model_info(good.version, model_name=MODEL).tags["gate.decision"] == "rejected"
    )


def test_gate_refuses_a_first_model_below_its_baseline(settings_env, split):
    """A first model whose AP on the gate window is under its run's baseline is refused."""
    from ml_platform.training import metrics, registry
    from ml_platform.training.gate import run_gate

    settings_env(gate_min_auc=0.5)
    train, valid = split
    cols = list(FEATURE_COLUMNS)
    baseline = models.fit_baseline(train, cols)
    base_m = metrics.validation_metrics(valid, baseline.score(valid))
    stump = models.fit_lightgbm(
        train, ["tx_amount"], num_boost_round=2, threads=1, params={"num_leaves": 2}
    )
    stump_m = metrics.validation_metrics(valid, stump.score(valid))
    assert stump_m["roc_auc"] >= 0.5 and stump_m["average_precision"] < base_m["average_precision"]
    cands = models.CandidateSet(
        baseline, stump, base_m, stump_m, stump, "weak on purpose", 0.5, stump_m
    )
    info = registry.log_training_run(
        cands,
        train,
        valid,
        WINDOWS,
        model_name=MODEL,
        use_case="fraud",
        feature_version=FEATURE_VERSION,
        as_of="2025-05-05",
    )
    decision = run_gate(valid, f"{WINDOWS.valid_start}..{WINDOWS.valid_end}", model_name=MODEL)
    assert not decision.promote and "does not beat the baseline" in decision.reason
    assert registry.current_version("champion", model_name=MODEL) is None
    assert (
        registry.get_model_info(info.version, model_name=MODEL).tags["gate.decision"] == "rejected"
    )


def test_gate_refuses_worse_model_and_rollback_restores(settings_env, split, capsys):
    from ml_platform.cli import main
    from ml_platform.training import registry
    from ml_platform.training.gate import run_gate

    settings_env(gate_min_auc=0.5)
    _, valid = split
    window = f"{WINDOWS.valid_start}..{WINDOWS.valid_end}"

    good, _ = _log(split)
    first = run_gate(valid, window, model_name=MODEL)
    assert first.promote and "first model" in first.reason
    assert registry.current_version("champion", model_name=MODEL) == good.version

    # a weaker model (two features, the baseline forced) is refused, and the reason is kept
    worse, _ = _log(split, cols=["tx_amount", "tx_during_night"], margin=1.0)
    decision = run_gate(valid, window, model_name=MODEL)
    assert not decision.promote and "gain" in decision.reason
    assert (
        decision.challenger_metrics["average_precision"]
        < decision.champion_metrics["average_precision"]
    )
    assert registry.current_version("champion", model_name=MODEL) == good.version
    assert (
        registry.get_model_info(worse.version, model_name=MODEL).tags["gate.decision"] == "rejected"
    )

    # a manual promotion, then rollback restores the previous champion
    assert main(["promote", worse.version, "--reason", "test override", "--who", "tester"]) == 0
    assert registry.current_version("champion", model_name=MODEL) == worse.version
    promoted = registry.get_model_info(worse.version, model_name=MODEL).tags
    assert promoted["alias.champion.set_by"] == "tester"
    assert promoted["alias.champion.why"] == "test override" and promoted["alias.champion.set_at"]
    assert main(["rollback", "--reason", "worse in production"]) == 0
    assert registry.current_version("champion", model_name=MODEL) == good.version
    assert (
        "rollback from"
        in registry.get_model_info(good.version, model_name=MODEL).tags["alias.champion.why"]
    )
    assert main(["rollback"]) == 2  # nothing before the first champion
    assert "nothing before it" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed["versions"]] == [worse.version, good.version]
    assert listed["versions"][1]["aliases"] == ["champion"]
    assert listed["versions"][1]["lineage"]["feature_version"] == FEATURE_VERSION
    events = [(e["alias"], e["version"]) for e in listed["alias_history"]]
    assert events[-1] == ("champion", good.version)
    assert listed["versions"][1]["lineage"]["use_case"] == "fraud"
    assert main(["promote", "99"]) == 2
    assert "fraud_detector has no version 99" in capsys.readouterr().err

    # another use case's model is another registered model: nothing of fraud's is shared
    assert registry.list_models(model_name="churn_model") == []
    assert registry.current_version("champion", model_name="churn_model") is None
    assert main(["models", "--use-case", "churn", "--json"]) == 2
    assert "use case 'churn': not found" in capsys.readouterr().err
