"""Where raw transactions come from: the built-in simulator or a folder of daily files.

Why a single ``read_raw_day``: the ingestion asset, the backtest and the benchmarks all
need "the raw rows of day D" without caring about the source. External files are read as
they are (extra columns kept, nothing coerced): judging them is validation's job. A
missing or unreadable file is a partition-level failure whose message names the file.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd

from ml_platform.data.lake import atomic_write_parquet
from ml_platform.data.simulator import simulate_day
from ml_platform.settings import Settings

FORMATS = ("parquet", "csv")


class SourceFileError(ValueError):
    """A source file exists but cannot be read as a table."""


def source_file(source_dir: Path, day: date) -> Path:
    """The daily file for ``day``: ``YYYY-MM-DD.parquet``, else ``YYYY-MM-DD.csv``."""
    candidates = [Path(source_dir) / f"{day.isoformat()}.{fmt}" for fmt in FORMATS]
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError(
        f"no source file for {day}: expected {candidates[0]} or {candidates[1].name}"
        + ("" if Path(source_dir).is_dir() else f" (folder {source_dir} does not exist)")
    )


def read_file(path: Path) -> pd.DataFrame:
    """One daily file as a DataFrame, or ``SourceFileError`` naming the file and problem."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, low_memory=False)
    except Exception as exc:  # pandas, pyarrow and the OS each raise their own types
        raise SourceFileError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def read_raw_day(day: date, settings: Settings) -> pd.DataFrame:
    """The raw rows of ``day`` from ``settings.source`` (simulator or daily files)."""
    if settings.source == "simulator":
        return simulate_day(day, settings)
    return read_file(source_file(settings.source_dir, day))


def export_days(
    settings: Settings,
    start: date,
    end: date,
    out_dir: Path,
    fmt: Literal["parquet", "csv"] = "parquet",
) -> list[Path]:
    """Write simulated days ``start..end`` as daily source files (tests, backtests, demos)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt: must be one of {FORMATS}, got {fmt!r}")
    if end < start:
        raise ValueError(f"end: {end} is before start {start}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range((end - start).days + 1):
        day = start + timedelta(days=i)
        df = simulate_day(day, settings)
        path = out_dir / f"{day.isoformat()}.{fmt}"
        if fmt == "parquet":
            atomic_write_parquet(df, path)
        else:
            _atomic_write_csv(df, path)
        paths.append(path)
    return paths


def _atomic_write_csv(df: pd.DataFrame, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        df.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["SourceFileError", "export_days", "read_file", "read_raw_day", "source_file"]
