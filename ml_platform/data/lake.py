"""The data lake: one Parquet file per table and daily partition, written atomically.

Layout: ``<lake_dir>/<table>/date=YYYY-MM-DD/data.parquet`` (hive style, so DuckDB and
dbt read a whole table with ``read_parquet('<table>/*/*.parquet', hive_partitioning=true)``).
A write goes to a hidden temporary file in the same folder and is renamed into place, so a
killed run never leaves half a partition and a re-run replaces the partition whole.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

FILE_NAME = "data.parquet"


def partition_path(lake_dir: Path, table: str, day: date | str) -> Path:
    return Path(lake_dir) / table / f"date={_iso(day)}" / FILE_NAME


def table_glob(lake_dir: Path, table: str) -> str:
    """The glob dbt/DuckDB use to read every partition of ``table``."""
    return str(Path(lake_dir) / table / "*" / FILE_NAME)


def write_partition(df: pd.DataFrame, lake_dir: Path, table: str, day: date | str) -> Path:
    """Atomically replace one partition of ``table`` with ``df``."""
    target = partition_path(lake_dir, table, day)
    atomic_write_parquet(df, target)
    return target


def atomic_write_parquet(df: pd.DataFrame, target: Path) -> None:
    """Write ``df`` to ``target`` via temp file + ``os.replace`` (atomic on POSIX)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_partitions(
    lake_dir: Path, table: str, days: Iterable[date | str], *, missing_ok: bool = False
) -> pd.DataFrame:
    """Concatenate the given partitions of ``table`` (in the order given)."""
    paths = [partition_path(lake_dir, table, d) for d in days]
    present = [p for p in paths if p.exists()]
    missing = [p for p in paths if not p.exists()]
    if missing and not missing_ok:
        raise FileNotFoundError(
            f"table {table!r}: {len(missing)} partition(s) missing, first {missing[0]}"
        )
    if not present:
        return pd.DataFrame()
    frames = [pd.read_parquet(p) for p in present]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def split_by_day(
    df: pd.DataFrame, days: Iterable[date | str], column: str = "tx_datetime"
) -> dict[str, pd.DataFrame]:
    """``{YYYY-MM-DD: rows of that day}`` for ``days``, as a single-run backfill returns it.

    Rows of other days are dropped, a day without rows gets an empty frame, and rows keep
    their order within a day. Vectorised (datetime64 day numbers, one stable sort).
    """
    keys = [_iso(d) for d in days]
    day = df[column].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    order = np.argsort(day, kind="stable")
    sorted_days = day[order]
    out: dict[str, pd.DataFrame] = {}
    for key in keys:
        first = np.datetime64(key, "D")
        lo, hi = np.searchsorted(sorted_days, [first, first + np.timedelta64(1, "D")])
        out[key] = df.iloc[order[lo:hi]].reset_index(drop=True)
    return out


def list_partitions(lake_dir: Path, table: str) -> list[str]:
    """ISO dates of the partitions present for ``table``, sorted."""
    root = Path(lake_dir) / table
    if not root.exists():
        return []
    return sorted(
        p.name.removeprefix("date=")
        for p in root.iterdir()
        if p.name.startswith("date=") and (p / FILE_NAME).exists()
    )


def _iso(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()
