"""Dagster definitions for the warehouse stage: the dbt project on DuckDB.

Every use case gets its models from its declaration (staging, prediction outcomes, the
labelled performance mart; see :mod:`ml_platform.defs.warehouse.generate`) plus the ones its
folder ships. ``@dbt_assets`` needs the dbt manifest when it is defined. So that definitions
load in a clean checkout too (tests, CI, ``dagster dev`` without ``make dev``), :func:`build`
generates the models and makes the manifest when missing or stale (``dbt parse``, ~5 s
once; a no-op afterwards) - when definitions are built, never at import. Every use case's
dbt assets run with the one ``dbt`` resource of :func:`shared_resources` (one project, one
warehouse file).
"""

from typing import Any

import dagster as dg

from ml_platform.defs.context import StageContext
from ml_platform.settings import Settings


def build(ctx: StageContext) -> dg.Definitions:
    """The dbt models of ``ctx.use_case`` (the ``dbt`` resource comes with the shared ones)."""
    from ml_platform.defs.warehouse.project import prepare_dbt_manifest

    prepare_dbt_manifest(settings=ctx.settings)
    from ml_platform.defs.warehouse.assets import build_warehouse_assets

    return dg.Definitions(assets=build_warehouse_assets(ctx))


def shared_resources(settings: Settings) -> dict[str, Any]:
    """The ``dbt`` resource, once for every use case."""
    from dagster_dbt import DbtCliResource

    from ml_platform.defs.warehouse.project import warehouse_project

    return {"dbt": DbtCliResource(project_dir=warehouse_project)}
