"""The data lake: one Parquet file per table and daily partition, written atomically.

Layout: ``<lake_dir>/<table>/date=YYYY-MM-DD/data.parquet`` (hive style, so DuckDB and
dbt read a whole table with ``read_parquet('<table>/*/*.parquet', hive_partitioning=true)``).
A write goes to a hidden temporary file in the same folder and is renamed into place, so a
killed run never leaves half a partition and a re-run replaces the partition whole.
Files are LZ4-compressed: for the wide float tables (features) it reads about five times
faster than zstd for ~20 % more bytes, and batch scoring is read-bound. Many partitions are
read as one Arrow dataset (multi-threaded) and written by a small thread pool (Parquet
encoding releases the GIL).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

FILE_NAME = "data.parquet"
COMPRESSION = "lz4"


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


def write_partitions(
    parts: Mapping[str, pd.DataFrame], lake_dir: Path, table: str, *, threads: int = 2
) -> int:
    """Write ``{day: frame}`` as partitions of ``table`` (each atomic); returns the rows."""
    items = list(parts.items())
    if threads <= 1 or len(items) <= 1:
        for day, df in items:
            write_partition(df, lake_dir, table, day)
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lake-write") as pool:
            list(pool.map(lambda item: write_partition(item[1], lake_dir, table, item[0]), items))
    return sum(len(df) for _, df in items)


def atomic_write_parquet(df: pd.DataFrame, target: Path) -> None:
    """Write ``df`` to ``target`` via temp file + ``os.replace`` (atomic on POSIX)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False, engine="pyarrow", compression=COMPRESSION)
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
    if len(present) == 1:
        return pd.read_parquet(present[0])
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # one multi-threaded read; the partition folder names are not a column
        table_ = pq.ParquetDataset(present, partitioning=None).read()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # files of different schemas (e.g. an empty partition's null columns): per file
        frames = [pd.read_parquet(p) for p in present]
        rows = [f for f in frames if len(f)] or frames[:1]  # empty days have untyped columns
        return pd.concat(rows, ignore_index=True)
    return table_.to_pandas()


def split_by_day(
    df: pd.DataFrame, days: Iterable[date | str], column: str = "tx_datetime"
) -> dict[str, pd.DataFrame]:
    """``{YYYY-MM-DD: rows of that day}`` for ``days``, as a single-run backfill returns it.

    Rows of other days are dropped, a day without rows gets an empty frame, and rows keep
    their order within a day. Vectorised (datetime64 day numbers, one stable sort); rows
    already in day order (the usual case) are sliced, not copied.
    """
    keys = [_iso(d) for d in days]
    day = day_numbers(df, column)
    in_order = bool(np.all(day[1:] >= day[:-1]))
    order = None if in_order else np.argsort(day, kind="stable")
    sorted_days = day if order is None else day[order]
    out: dict[str, pd.DataFrame] = {}
    for key in keys:
        first = np.datetime64(key, "D")
        lo, hi = np.searchsorted(sorted_days, [first, first + np.timedelta64(1, "D")])
        part = df.iloc[lo:hi] if order is None else df.iloc[order[lo:hi]]
        out[key] = part.set_axis(pd.RangeIndex(hi - lo), axis=0, copy=False)
    return out


def day_numbers(df: pd.DataFrame, column: str = "tx_datetime") -> np.ndarray:
    """The calendar day (``datetime64[D]``) of every row."""
    return df[column].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")


def on_days(
    df: pd.DataFrame, days: Iterable[date | str], column: str = "tx_datetime"
) -> np.ndarray:
    """Boolean mask of the rows whose ``column`` falls on one of ``days``."""
    wanted = np.array(sorted({_iso(d) for d in days}), dtype="datetime64[D]")
    return np.isin(day_numbers(df, column), wanted)


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
