"""A use case's dbt models as Dagster assets (group "<name>_warehouse"); dbt tests become checks.

The models of a use case are those generated into its folder of the dbt project
(:mod:`ml_platform.defs.warehouse.generate`): staging, prediction outcomes, the labelled
performance mart and the models it ships itself. One ``dbt build`` per run covers the run's
whole partition range (single-run backfill), in the "warehouse" concurrency pool so that
only one process writes the DuckDB file. Asset keys are the use case's prefix and the model's
base name (``fraud_stg_transactions``, ``flights_stg_events``); the DuckDB tables are the
model names (:func:`ml_platform.defs.names.warehouse_model`). Sources name the Dagster asset
they read by its base name (``meta.dagster.asset_key: [validated_events]``), prefixed here
the same way.
"""

import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from ml_platform import warehouse
from ml_platform.data.locks import warehouse_lock
from ml_platform.defs import names
from ml_platform.defs.context import StageContext
from ml_platform.defs.warehouse.dbt_env import dbt_environment
from ml_platform.defs.warehouse.generate import selection
from ml_platform.defs.warehouse.project import warehouse_project

POOL = names.WAREHOUSE_POOL
DAY = names.WAREHOUSE_DAY


class WarehouseTranslator(DagsterDbtTranslator):
    """dbt models and sources under the use case's prefix: keys ``<name>_<model>``, group
    ``<name>_warehouse`` (or ``<name>_<group>`` when their meta names a Dagster group),
    owned by the data platform team unless their meta names owners."""

    def __init__(self, ctx: StageContext) -> None:
        super().__init__()
        self._ctx = ctx

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        name = super().get_asset_key(dbt_resource_props).path[-1]
        if dbt_resource_props.get("resource_type") == "model":
            name = names.warehouse_asset_base(name, self._ctx.use_case.name)
        return self._ctx.key(name)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self._ctx.name(super().get_group_name(dbt_resource_props) or names.WAREHOUSE)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        return super().get_owners(dbt_resource_props) or ["team:data-platform"]


def build_warehouse_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """The dbt project's models as assets of ``ctx.use_case`` (the manifest must exist)."""
    settings = ctx.settings
    op_name = ctx.name(names.WAREHOUSE_DBT)
    uc = ctx.use_case.name

    @dbt_assets(
        manifest=warehouse_project.manifest_path,
        project=warehouse_project,
        select=selection(uc),
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=WarehouseTranslator(ctx),
        pool=POOL,
        name=op_name,
    )
    def warehouse_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        """``dbt build`` over the run's partition range; row counts added from DuckDB after."""
        window = context.partition_time_window
        start, end = window.start.date(), (window.end - timedelta(days=1)).date()
        # The pool serialises runs of one instance; the file lock also covers a CLI run beside
        # `dagster dev`, a manual `ml-platform dbt` and readers (DuckDB has a single writer).
        with warehouse_lock(settings.warehouse_path), dbt_environment(settings, start, end):
            invocation = dbt.cli(["build"], context=context, raise_on_error=False)
            events = list(invocation.stream())
        error = invocation.get_error()
        if error is None:  # each call gets its own target folder: keep it only to debug a failure
            shutil.rmtree(invocation.target_path, ignore_errors=True)
        _prune_failed_targets(Path(invocation.target_path).parent, op_name)
        tables = {
            e.output_name: names.warehouse_model(_base(e.output_name, ctx), uc)
            for e in events
            if isinstance(e, dg.Output)
        }
        counts = _row_counts(settings.warehouse_path, set(tables.values()), start, end)
        for event in events:
            table = tables.get(event.output_name, "") if isinstance(event, dg.Output) else ""
            if table in counts:
                event = event.with_metadata({**event.metadata, **counts[table]})
            yield event
        if error is not None:
            raise error

    return [warehouse_dbt]


def _prune_failed_targets(target_dir: Path, op_name: str, keep: int = 3) -> None:
    """Keep only the newest few run folders that failed runs of ``op_name`` left in
    ``target/`` (dagster-dbt names them ``<op name>-<run id>-<uuid>``)."""
    runs = sorted(target_dir.glob(f"{op_name}-*"), key=lambda p: p.stat().st_mtime)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _base(output_name: str, ctx: StageContext) -> str:
    """The model's base name behind an output (its asset key without the use case's prefix)."""
    return output_name.removeprefix(ctx.name(""))


def _row_counts(path: Path, wanted: set[str], start: date, end: date) -> dict[str, dict[str, Any]]:
    """Rows per model table (``dagster/row_count``) of the ``wanted`` tables, and inside the
    run's range for the tables holding the warehouse's day column. Views (the performance
    marts) are left out. One read-only connection, opened after dbt has exited (single writer)."""
    if not path.exists() or not wanted:
        return {}
    out: dict[str, dict[str, Any]] = {}
    with warehouse.read_only(path) as con:
        present = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
        dated = {
            r[0]
            for r in con.execute(
                "select table_name from duckdb_columns() where column_name = ?", [DAY]
            ).fetchall()
        }
        for table in sorted(present & wanted):
            (total,) = con.execute(f'select count(*) from "{table}"').fetchone()
            out[table] = {"dagster/row_count": int(total)}
            if table in dated:
                (n,) = con.execute(
                    f'select count(*) from "{table}" where "{DAY}" between ? and ?', [start, end]
                ).fetchone()
                out[table]["range_rows"] = int(n)
                out[table]["range"] = f"{start}..{end}"
    return out
