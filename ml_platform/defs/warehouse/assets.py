"""The dbt models as Dagster assets (group "warehouse"); dbt tests become asset checks.

One ``dbt build`` per run covers the run's whole partition range (single-run backfill),
in the "warehouse" concurrency pool so that only one process writes the DuckDB file.
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
from ml_platform.defs.partitions import daily_partitions
from ml_platform.defs.warehouse.dbt_env import dbt_environment
from ml_platform.defs.warehouse.project import warehouse_project
from ml_platform.settings import get_settings

GROUP = "warehouse"
POOL = "warehouse"
#: Models holding one row per transaction/day, so a partition's rows can be counted.
DATED_MODELS = ("stg_transactions", "fct_daily_transactions")
UNDATED_MODELS = ("dim_customers", "dim_terminals")


class WarehouseTranslator(DagsterDbtTranslator):
    """dbt models in group "warehouse" (unless their meta names a Dagster group), owned by
    the data platform team unless their meta names owners."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return super().get_group_name(dbt_resource_props) or GROUP

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> Sequence[str] | None:
        return super().get_owners(dbt_resource_props) or ["team:data-platform"]


@dbt_assets(
    manifest=warehouse_project.manifest_path,
    project=warehouse_project,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    dagster_dbt_translator=WarehouseTranslator(),
    pool=POOL,
    name="warehouse_dbt",
)
def warehouse_dbt(context: dg.AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
    """``dbt build`` over the run's partition range; row counts added from DuckDB after."""
    window = context.partition_time_window
    start, end = window.start.date(), (window.end - timedelta(days=1)).date()
    settings = get_settings()
    # The pool serialises runs of one instance; the file lock also covers a CLI run beside
    # `dagster dev`, a manual `ml-platform dbt` and readers (DuckDB has a single writer).
    with warehouse_lock(settings.warehouse_path), dbt_environment(settings, start, end):
        invocation = dbt.cli(["build"], context=context, raise_on_error=False)
        events = list(invocation.stream())
    error = invocation.get_error()
    if error is None:  # each call gets its own target folder: keep it only to debug a failure
        shutil.rmtree(invocation.target_path, ignore_errors=True)
    _prune_failed_targets(Path(invocation.target_path).parent)
    counts = _row_counts(settings.warehouse_path, start, end) if events else {}
    for event in events:
        if isinstance(event, dg.Output) and event.output_name in counts:
            event = event.with_metadata({**event.metadata, **counts[event.output_name]})
        yield event
    if error is not None:
        raise error


def _prune_failed_targets(target_dir: Path, keep: int = 3) -> None:
    """Keep only the newest few run folders that failed runs left in ``target/``."""
    runs = sorted(target_dir.glob("warehouse_dbt-*"), key=lambda p: p.stat().st_mtime)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _row_counts(path: Path, start: date, end: date) -> dict[str, dict[str, Any]]:
    """Rows per model table (``dagster/row_count``), and inside the run's range for the dated
    models. One read-only connection, opened after dbt has exited (single writer)."""
    if not path.exists():
        return {}
    out: dict[str, dict[str, Any]] = {}
    with warehouse.read_only(path) as con:
        present = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
        for table in sorted(present & {*DATED_MODELS, *UNDATED_MODELS}):
            (total,) = con.execute(f'select count(*) from "{table}"').fetchone()
            out[table] = {"dagster/row_count": int(total)}
            if table in DATED_MODELS:
                (n,) = con.execute(
                    f'select count(*) from "{table}" where tx_date between ? and ?', [start, end]
                ).fetchone()
                out[table]["range_rows"] = int(n)
                out[table]["range"] = f"{start}..{end}"
    return out
