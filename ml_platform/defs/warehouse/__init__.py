"""Dagster definitions for the warehouse stage: the dbt project on DuckDB.

``@dbt_assets`` needs the dbt manifest at import time. So that definitions load in a
clean checkout too (tests, CI, ``dagster dev`` without ``make dev``), the manifest is
built here when missing or stale (``dbt parse``, ~5 s once; a no-op afterwards).
"""

import dagster as dg
from dagster_dbt import DbtCliResource

from ml_platform.defs.warehouse.project import prepare_dbt_manifest, warehouse_project

prepare_dbt_manifest()

from ml_platform.defs.warehouse.assets import warehouse_dbt  # noqa: E402  (needs the manifest)

defs = dg.Definitions(
    assets=[warehouse_dbt],
    resources={"dbt": DbtCliResource(project_dir=warehouse_project)},
)
