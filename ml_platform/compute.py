"""Where batch work runs: in this process, or on a Dask cluster (``ML_PLATFORM_COMPUTE``).

Core functions take the client as an argument (None means local); only the caller at the
edge (a Dagster resource, the command line) opens it from the settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client

    from ml_platform.settings import Settings

#: Workers of the LocalCluster started when no scheduler address is set (one per core here).
LOCAL_CLUSTER_WORKERS = 2


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client | None]:
    """A client of the configured cluster, None when compute is local.

    With ``compute='dask'`` and no ``dask_address``, a process-based ``LocalCluster`` lives
    as long as the block.
    """
    if settings.compute == "local":
        yield None
        return
    from distributed import Client, LocalCluster

    if settings.dask_address:
        with Client(settings.dask_address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=LOCAL_CLUSTER_WORKERS, threads_per_worker=1, processes=True
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
