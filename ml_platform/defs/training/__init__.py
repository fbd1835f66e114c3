"""Dagster definitions for the training stage: training_set, candidate_model, champion_model.

Jobs: ``training_job`` (train, register, gate), ``feature_pipeline_job`` (ingestion +
features over a partition range; what ``ml-platform backtest`` materializes) and
``training_features_job`` (features and the online store, once ingestion has run: the
demo uses it, so the API starts with the history of the whole range).
"""

import dagster as dg

from ml_platform.defs.training.assets import candidate_model, champion_model, training_set

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.groups("training"),
    description="Build the training set, train + register the challenger, run the promotion gate.",
)

feature_pipeline_job = dg.define_asset_job(
    name="feature_pipeline_job",
    selection=dg.AssetSelection.groups("ingestion")
    | dg.AssetSelection.assets("transaction_features"),
    description="Ingest, validate and compute features for a range of days (used by backtest).",
)

training_features_job = dg.define_asset_job(
    name="training_features_job",
    selection=dg.AssetSelection.assets("transaction_features", "online_feature_store"),
    description=(
        "Features for a range of days whose transactions are validated, and the online store "
        "loaded as of the range's end (demo, retraining)."
    ),
)

defs = dg.Definitions(
    assets=[training_set, candidate_model, champion_model],
    jobs=[training_job, feature_pipeline_job, training_features_job],
)
