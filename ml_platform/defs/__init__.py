"""The Dagster layer: thin assets, checks, jobs and sensors over the plain-Python core.

Each stage lives in its own folder and exposes ``defs``; ``build_definitions`` merges them.
"""

from __future__ import annotations

import warnings

import dagster as dg

# Single-run backfill policies and look-back partition mappings are marked beta in Dagster
# 1.13; we depend on them deliberately, so their warnings are noise for our users.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def build_definitions() -> dg.Definitions:
    # Imported here so that importing ml_platform.defs.* submodules stays cheap.
    from ml_platform.defs import (
        automation,
        features,
        ingestion,
        monitoring,
        serving,
        training,
        warehouse,
    )
    from ml_platform.defs.resources import build_resources

    stages = [
        ingestion.defs,
        warehouse.defs,
        features.defs,
        training.defs,
        serving.defs,
        monitoring.defs,
        automation.defs,
    ]
    return dg.Definitions.merge(
        *stages,
        dg.Definitions(resources=build_resources(), executor=dg.in_process_executor),
    )
