"""Dagster definitions for the features stage: transaction_features, online_feature_store."""

import dagster as dg

from ml_platform.defs.features.assets import online_feature_store, transaction_features

defs = dg.Definitions(assets=[transaction_features, online_feature_store])
