"""Dagster resources: the lake IO manager that stores every table as daily Parquet."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from ml_platform.data import lake
from ml_platform.settings import get_settings


class LakeIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames in the lake, one atomic Parquet file per daily partition.

    A single-run backfill over a range returns ``{partition_key: DataFrame}``; a single
    partition may return the DataFrame itself. Unpartitioned assets get one file.
    """

    lake_dir: str

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | dict | None) -> None:
        if obj is None:
            return
        table = context.asset_key.path[-1]
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
        table = context.upstream_output.asset_key.path[-1]
        root = Path(self.lake_dir)
        if not context.has_asset_partitions:
            return pd.read_parquet(root / table / lake.FILE_NAME)
        # Look-back windows may reach before the first partition: those simply do not exist.
        return lake.read_partitions(root, table, context.asset_partition_keys, missing_ok=True)


def build_resources() -> dict:
    return {"io_manager": LakeIOManager(lake_dir=str(get_settings().lake_dir))}
