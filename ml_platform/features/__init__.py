"""The feature store: one definition module, a batch engine and an online engine.

``build_features`` (batch, for training and batch scoring) and ``OnlineFeatureEngine``
(``ml_platform.features.online``, serving over an online store) compute the same
``FEATURE_COLUMNS`` from the same definitions; ``FEATURE_VERSION`` hashes those definitions
for the model registry. Only numpy and pandas are imported here.
"""

from ml_platform.features.batch import build_features, build_features_for_days
from ml_platform.features.definitions import (
    FEATURE_COLUMNS,
    FEATURE_VERSION,
    FEATURES,
    REQUIRED_COLUMNS,
    horizon_days,
)

__all__ = [
    "FEATURE_COLUMNS",
    "FEATURE_VERSION",
    "FEATURES",
    "REQUIRED_COLUMNS",
    "build_features",
    "build_features_for_days",
    "horizon_days",
]
