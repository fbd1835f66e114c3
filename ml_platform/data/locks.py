"""Inter-process file locks: one writer on the DuckDB warehouse, whatever starts it.

DuckDB allows one read-write process per database file, and while it is open every other
open fails. Dagster's "warehouse" pool serialises dbt runs that share one Dagster instance;
this lock also covers what the pool cannot see: two instances (a CLI run beside
``dagster dev``), a manual ``dbt build``, or a reader opening the file mid-build. A
``flock`` is released by the kernel when its holder dies, even by SIGKILL, so a crashed
run never leaves the warehouse locked.

Writers (every dbt invocation that writes the warehouse) take ``warehouse_lock(path)``;
readers take ``warehouse_lock(path, shared=True)`` around their short read-only
connection, so they wait for a running build instead of failing.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(TimeoutError):
    """The lock stayed held by another process for longer than the timeout."""


def lock_path_for(target: Path) -> Path:
    """The lock file beside ``target`` (``warehouse.duckdb`` -> ``.warehouse.duckdb.lock``)."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextmanager
def file_lock(
    path: Path, *, shared: bool = False, timeout: float = 600.0, poll: float = 0.05
) -> Iterator[None]:
    """Hold an exclusive (or shared) ``flock`` on ``path`` for the block.

    Raises :class:`LockTimeout` naming the file after ``timeout`` seconds of waiting.
    """
    if timeout < 0:
        raise ValueError(f"timeout: must be >= 0, got {timeout}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"{path}: still locked by another process after {timeout:.0f}s"
                    ) from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def warehouse_lock(
    warehouse_path: Path, *, shared: bool = False, timeout: float = 600.0
) -> Iterator[None]:
    """The warehouse's lock: exclusive for dbt (the writer), shared for readers."""
    with file_lock(lock_path_for(warehouse_path), shared=shared, timeout=timeout):
        yield
