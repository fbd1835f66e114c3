"""Dagster definitions for the warehouse stage: the dbt project on DuckDB.

``@dbt_assets`` needs the dbt manifest when it is defined. So that definitions load in a
clean checkout too (tests, CI, ``dagster dev`` without ``make dev``), :func:`build` makes it
when missing or stale (``dbt parse``, ~5 s once; a no-op afterwards) - when definitions are
built, never at import.
"""

import dagster as dg

from ml_platform.defs.context import StageContext


def build(ctx: StageContext) -> dg.Definitions:
    """The dbt models of ``ctx.use_case`` (and the dbt resource they run with)."""
    from dagster_dbt import DbtCliResource

    from ml_platform.defs.warehouse.project import prepare_dbt_manifest, warehouse_project

    prepare_dbt_manifest(settings=ctx.settings)
    from ml_platform.defs.warehouse.assets import build_warehouse_assets

    return dg.Definitions(
        assets=build_warehouse_assets(ctx),
        resources={"dbt": DbtCliResource(project_dir=warehouse_project)},
    )
