"""Dagster resources: the lake IO manager that stores every table as daily Parquet, and the
compute resource that owns a run's Dask client."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from ml_platform.data import lake
from ml_platform.defs import names
from ml_platform.defs.context import LAKE_TABLE_KEY
from ml_platform.settings import Settings

if TYPE_CHECKING:
    from distributed import Client


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


class ComputeResource(dg.ConfigurableResource):
    """Where a run's batch work runs (``ML_PLATFORM_COMPUTE``): ``local`` in the step's
    process, ``dask`` on the cluster at ``dask_address`` (a ``LocalCluster`` when absent).

    The client is opened on first use, so a step that never asks starts no cluster, and is
    closed when the step's execution ends; core functions receive it as an argument.
    """

    compute: str = "local"
    dask_address: str | None = None

    _stack: Any = PrivateAttr(default=None)
    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Client | None:
        """The run's Dask client, None when compute is local."""
        from ml_platform.compute import open_dask_client

        if self._stack is None:
            stack = ExitStack()
            self._client = stack.enter_context(open_dask_client(self.compute, self.dask_address))
            self._stack = stack
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = self._client = None


def build_resources(settings: Settings) -> dict:
    """The resources every stage needs: the lake IO manager under ``settings.lake_dir`` and
    the compute resource of ``settings.compute`` / ``settings.dask_address``."""
    return {
        "io_manager": LakeIOManager(lake_dir=str(settings.lake_dir)),
        names.COMPUTE_RESOURCE: ComputeResource(
            compute=settings.compute, dask_address=settings.dask_address
        ),
    }
