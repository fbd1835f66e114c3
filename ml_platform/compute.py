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


COMPUTE_CHOICES = ("local", "dask")


@contextmanager
def dask_client(settings: Settings) -> Iterator[Client | None]:
    """A client of the configured cluster, None when compute is local."""
    with open_dask_client(settings.compute, settings.dask_address) as client:
        yield client


@contextmanager
def open_dask_client(compute: str, address: str | None = None) -> Iterator[Client | None]:
    """A client of the cluster at ``address``, None when ``compute`` is local.

    With ``compute='dask'`` and no address, a process-based ``LocalCluster`` lives as long
    as the block.
    """
    if compute not in COMPUTE_CHOICES:
        raise ValueError(f"compute: must be one of {', '.join(COMPUTE_CHOICES)}, got {compute!r}")
    if compute == "local":
        yield None
        return
    from distributed import Client, LocalCluster

    if address:
        with Client(address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=LOCAL_CLUSTER_WORKERS, threads_per_worker=1, processes=True
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
