"""Dagster resources: the lake IO manager that stores every table as daily Parquet."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from ml_platform.data import lake
from ml_platform.defs.context import LAKE_TABLE_KEY
from ml_platform.settings import Settings


def lake_table_of(definition_metadata: dict | None, asset_key: dg.AssetKey) -> str:
    """The lake table an asset declared (``LAKE_TABLE_KEY``), else its key's last part."""
    table = (definition_metadata or {}).get(LAKE_TABLE_KEY)
    if table is None:
        return asset_key.path[-1]
    return table.value if isinstance(table, dg.TextMetadataValue) else str(table)


class LakeIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames in the lake, one atomic Parquet file per daily partition.

    A single-run backfill over a range returns ``{partition_key: DataFrame}``; a single
    partition may return the DataFrame itself. Unpartitioned assets get one file. The table
    is the one the asset names in its metadata (the lake keeps unprefixed table names).
    """

    lake_dir: str

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | dict | None) -> None:
        if obj is None:
            return
        table = lake_table_of(context.definition_metadata, context.asset_key)
        root = Path(self.lake_dir)
        if not context.has_asset_partitions:
            target = root / table / lake.FILE_NAME
            lake.atomic_write_parquet(obj, target)
            context.add_output_metadata({"dagster/row_count": len(obj), "path": str(target)})
            return
        keys = list(context.asset_partition_keys)
        parts = obj if isinstance(obj, dict) else {keys[0]: obj} if len(keys) == 1 else None
        if parts is None or set(parts) != set(keys):
            raise ValueError(
                f"{table}: expected one DataFrame per partition {keys[0]}..{keys[-1]}, "
                f"got {type(obj).__name__}"
                + (f" with keys {sorted(parts)[:3]}..." if isinstance(parts, dict) else "")
            )
        rows = lake.write_partitions({k: parts[k] for k in keys}, root, table)
        context.add_output_metadata(
            {"dagster/row_count": rows, "partitions": len(keys), "path": str(root / table)}
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        table = lake_table_of(upstream.definition_metadata, upstream.asset_key)
        root = Path(self.lake_dir)
        if not context.has_asset_partitions:
            return pd.read_parquet(root / table / lake.FILE_NAME)
        # Look-back windows may reach before the first partition: those simply do not exist.
        return lake.read_partitions(root, table, context.asset_partition_keys, missing_ok=True)


def build_resources(settings: Settings) -> dict:
    """The resources every stage needs: the lake IO manager under ``settings.lake_dir``."""
    return {"io_manager": LakeIOManager(lake_dir=str(settings.lake_dir))}
