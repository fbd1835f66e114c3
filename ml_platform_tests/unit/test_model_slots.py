"""The served champion survives a version that cannot load, and ``last_error`` says why.

Real MLflow registry (the session's SQLite one, a model name of its own), real LightGBM
artifacts saved by MLflow, the service's own loader and alias lookup.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np

from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION
from ml_platform.serving.scoring import ModelSlots

MODEL = "fraud_detector_slots"


def _register(client, model_dir: Path, **tags: str) -> str:
    """A LightGBM model saved at ``model_dir`` and registered as a new version of MODEL."""
    import mlflow.lightgbm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, len(FEATURE_COLUMNS)))
    y = (x[:, 0] > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=3)
    mlflow.lightgbm.save_model(booster, str(model_dir), pip_requirements=["lightgbm"])
    base = {
        "model_kind": "lightgbm",
        "threshold": "0.5",
        "feature_columns": json.dumps(list(FEATURE_COLUMNS)),
        "feature_version": FEATURE_VERSION,
    }
    mv = client.create_model_version(MODEL, source=model_dir.as_uri(), tags={**base, **tags})
    return str(mv.version)


def test_unloadable_champion_keeps_the_previous_one_and_names_version_and_reason(
    settings_env, session_dir: Path, tmp_path: Path
) -> None:
    # the session's registry (its schema is built once per session), a model of our own
    registry_db = session_dir / "data" / "mlflow.db"
    registry_db.parent.mkdir(parents=True, exist_ok=True)
    settings_env(mlflow_tracking_uri=f"sqlite:///{registry_db}")  # the slots name the model
    from ml_platform.training import registry

    client = registry._client()
    client.create_registered_model(MODEL)
    good = _register(client, tmp_path / "good")
    gone = _register(client, tmp_path / "gone")
    shutil.rmtree(tmp_path / "gone")  # its files deleted from the artifact store
    other = _register(client, tmp_path / "other", feature_columns=json.dumps(["tx_amount"]))

    slots = ModelSlots(MODEL)
    client.set_registered_model_alias(MODEL, "champion", good)
    assert slots.refresh() == {"champion": good, "challenger": None}
    assert slots.last_error is None
    for broken, reason in ((gone, "No such artifact"), (other, "feature_columns")):
        client.set_registered_model_alias(MODEL, "champion", broken)
        assert slots.refresh() == {"champion": good, "challenger": None}
        assert slots.champion is not None and slots.champion.version == good
        error = slots.last_error or ""
        assert error.startswith(f"champion: ModelLoadError: version {broken} cannot be loaded")
        assert reason in error and error.endswith(f"; still serving version {good}"), error
    client.set_registered_model_alias(MODEL, "champion", good)
    assert slots.refresh() == {"champion": good, "challenger": None}
    assert slots.last_error is None
    # a challenger that never loaded: nothing to keep, and the error says so
    client.set_registered_model_alias(MODEL, "challenger", gone)
    assert slots.refresh() == {"champion": good, "challenger": None}
    error = slots.last_error or ""
    assert error.startswith(f"challenger: ModelLoadError: version {gone} cannot be loaded")
    assert error.endswith("; nothing served"), error
