"""Model behaviour: real signal is learnt, shuffled labels are not, the baseline rule holds."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.simulator import generate_days
from ml_platform.features import FEATURE_COLUMNS, build_features
from ml_platform.training import datasets, metrics, models

WINDOWS = datasets.platform_windows(date(2025, 4, 30), train_days=14, valid_days=7, label_delay=7)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate_days(
        date(2025, 3, 20), date(2025, 4, 30), seed=11, n_customers=1000, n_terminals=2000
    )


@pytest.fixture(scope="module")
def split(raw) -> tuple[pd.DataFrame, pd.DataFrame]:
    return datasets.split(datasets.join_labels(build_features(raw), raw), WINDOWS)


def test_candidates_learn_and_ship_the_better_model(split):
    train, valid = split
    cands = models.train_candidates(train, valid, FEATURE_COLUMNS, margin_ap=0.005, threads=1)
    assert cands.baseline_metrics["roc_auc"] > 0.8
    assert cands.lightgbm_metrics["roc_auc"] > 0.8
    gain = cands.lightgbm_metrics["average_precision"] - cands.baseline_metrics["average_precision"]
    assert (cands.chosen.kind == models.LIGHTGBM) == (gain > 0.005)
    assert 0.0 < cands.threshold < 1.0
    assert cands.lightgbm.best_iteration >= 1
    # an impossible margin always ships the baseline
    strict = models.train_candidates(train, valid, FEATURE_COLUMNS, margin_ap=1.0, threads=1)
    assert strict.chosen.kind == models.BASELINE and "baseline ships" in strict.reason


def test_shuffled_labels_give_chance_auc(raw):
    """Labels shuffled at the source: nothing in the pipeline may still predict them."""
    tx = raw.copy()
    tx["tx_fraud"] = np.random.default_rng(0).permutation(tx["tx_fraud"].to_numpy())
    labeled = datasets.join_labels(build_features(tx), tx)
    labeled["leak"] = labeled["tx_fraud"]  # positive control: a feature that IS the label
    train, valid = datasets.split(labeled, WINDOWS)
    y = valid["tx_fraud"].to_numpy()
    for model in (
        models.fit_baseline(train, FEATURE_COLUMNS),
        models.fit_lightgbm(train, FEATURE_COLUMNS, num_boost_round=50, threads=1),
    ):
        auc = metrics.roc_auc(y, model.score(valid))
        assert abs(auc - 0.5) < 0.1, (model.kind, auc)
    leaky = models.fit_lightgbm(train, [*FEATURE_COLUMNS, "leak"], num_boost_round=20, threads=1)
    assert metrics.roc_auc(y, leaky.score(valid)) > 0.95  # the guard can fail


def test_models_score_numpy_in_feature_order(split):
    train, valid = split
    model = models.fit_baseline(train, FEATURE_COLUMNS)
    X = valid[FEATURE_COLUMNS].to_numpy()
    np.testing.assert_allclose(model.score(X), model.score(valid[FEATURE_COLUMNS[::-1]]))
    with pytest.raises(ValueError, match="X: expected shape"):
        model.score(X[:, :3])
    with pytest.raises(ValueError, match="needs both classes"):
        models.fit_baseline(train.assign(tx_fraud=0), FEATURE_COLUMNS)
