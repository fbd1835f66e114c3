"""The feature store: one definition module, a batch engine and an online engine.

``build_features`` (batch, for training and batch scoring) and ``OnlineFeatureEngine``
(``ml_platform.features.online``, serving over an online store) compute the same
``FEATURE_COLUMNS`` from the same definitions; ``FEATURE_VERSION`` hashes those definitions
for the model registry. Only numpy and pandas are imported here: the definitions are read
from the use case's folder on first use of ``FEATURES`` & co.
"""

from typing import Any

from ml_platform.features import definitions
from ml_platform.features.batch import build_features, build_features_for_days
from ml_platform.features.definitions import FeatureSet, feature_set, horizon_days

__all__ = [
    "FEATURE_COLUMNS",
    "FEATURE_VERSION",
    "FEATURES",
    "REQUIRED_COLUMNS",
    "FeatureSet",
    "build_features",
    "build_features_for_days",
    "feature_set",
    "horizon_days",
]


def __getattr__(name: str) -> Any:
    if name in definitions.LAZY_NAMES:
        return getattr(definitions, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
