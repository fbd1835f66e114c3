"""Where raw events come from: a use case's declared source (simulator, package) or daily files.

Why a single "the raw rows of day D": the ingestion asset, the backtest, the feature command
and the benchmarks all need it without caring about the source. ``read_events_day`` and
``read_side_day`` read a use case's events and side-table rows of a day from its declared
source (a function of the folder, or ``<source_dir>/YYYY-MM-DD.*`` and
``<source_dir>/<table>/YYYY-MM-DD.*``); ``read_raw_day`` is the flagship's, driven by the
platform settings. External files are read as they are (extra columns kept, nothing
coerced): judging them is validation's job. A missing or unreadable file is a
partition-level failure whose message names the file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from ml_platform.data.lake import atomic_write_parquet
from ml_platform.data.simulator import simulate_day
from ml_platform.settings import Settings
from ml_platform.use_cases.loader import source_kind

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase
    from ml_platform.use_cases.spec import ResolvedSettings

FORMATS = ("parquet", "csv")
_DAILY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")


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


def daily_files(folder: Path) -> dict[date, Path]:
    """Every daily file ``YYYY-MM-DD.parquet|csv`` of ``folder`` by day, in day order (a
    day with both is read from its Parquet file, as ``source_file`` does); other files are
    ignored. A missing folder is an error naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    days: set[date] = set()
    for path in folder.iterdir():
        match = _DAILY_FILE.match(path.name)
        if match is None or not path.is_file():
            continue
        try:
            days.add(date.fromisoformat(match.group(1)))
        except ValueError:
            raise SourceFileError(f"{path}: not a date (YYYY-MM-DD)") from None
    return {day: source_file(folder, day) for day in sorted(days)}


def _files_dir(use_case: UseCase, settings: ResolvedSettings) -> Path:
    if settings.source_dir is None:
        raise ValueError(f"{use_case.env_prefix}SOURCE_DIR: required to read daily files")
    return Path(settings.source_dir)


def read_events_day(use_case: UseCase, day: date, settings: ResolvedSettings) -> pd.DataFrame:
    """The raw events of ``day`` from the use case's default source: its simulator or
    package function, or ``<source_dir>/YYYY-MM-DD.parquet|csv``."""
    kind = source_kind(use_case, settings)
    if kind == "files":
        return read_file(source_file(_files_dir(use_case, settings), day))
    return use_case.hook(getattr(use_case.spec.source, kind))(day, settings)


def read_side_day(
    use_case: UseCase, table: str, day: date, settings: ResolvedSettings
) -> pd.DataFrame:
    """A side table's rows of ``day`` from the use case's default source: the table's own
    function, or ``<source_dir>/<table>/YYYY-MM-DD.parquet|csv``."""
    tables = use_case.spec.event_schema.side_tables
    if table not in tables:
        raise ValueError(
            f"use case {use_case.name!r}: no side table {table!r} (declared: "
            f"{', '.join(tables) or 'none'})"
        )
    if source_kind(use_case, settings) == "files" or tables[table].source is None:
        return read_file(source_file(_files_dir(use_case, settings) / table, day))
    return use_case.hook(tables[table].source)(day, settings)


def _days(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"end: {end} is before start {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _write_days(
    read: Callable[[date], pd.DataFrame],
    days: Iterable[date],
    out_dir: Path,
    fmt: Literal["parquet", "csv"],
) -> tuple[list[Path], int]:
    """Each day's frame as ``out_dir/YYYY-MM-DD.<fmt>`` (atomic): the paths, the row total."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt: must be one of {FORMATS}, got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, rows = [], 0
    for day in days:
        df = read(day)
        path = out_dir / f"{day.isoformat()}.{fmt}"
        write_frame(df, path)
        paths.append(path)
        rows += len(df)
    return paths, rows


def write_frame(df: pd.DataFrame, path: Path) -> Path:
    """``df`` as Parquet or CSV by the file's suffix, atomically (a reader never sees half a
    file); CSV times as ``YYYY-MM-DD HH:MM:SS``, which validation parses back exactly."""
    path = Path(path)
    fmt = path.suffix.removeprefix(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unknown format {path.suffix!r} (use .parquet or .csv)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        atomic_write_parquet(df, path)
    else:
        _atomic_write_csv(df, path)
    return path


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
    days = _days(start, end)
    return _write_days(lambda day: simulate_day(day, settings), days, out_dir, fmt)[0]


@dataclass(frozen=True)
class Export:
    """What ``export_source`` wrote: events per day file, side-table rows per table."""

    use_case: str
    out_dir: Path
    days: int
    rows: int
    side_rows: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "use_case": self.use_case,
            "out": str(self.out_dir),
            "days": self.days,
            "rows": self.rows,
            "side_tables": dict(self.side_rows),
        }


def export_source(
    use_case: UseCase,
    settings: ResolvedSettings,
    out_dir: Path,
    start: date | None = None,
    end: date | None = None,
    fmt: Literal["parquet", "csv"] = "parquet",
) -> Export:
    """Write a use case's days ``start..end`` (default: its settings' range) from its
    default source as a files source: ``out_dir/YYYY-MM-DD.<fmt>`` for the events and
    ``out_dir/<table>/YYYY-MM-DD.<fmt>`` per side table, which ``read_events_day`` and
    ``read_side_day`` read back with ``source_dir = out_dir``."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: must be one of {', '.join(FORMATS)}, got {fmt!r}")
    days = _days(start or settings.start_date, end or settings.end_date)
    out_dir = Path(out_dir)
    _, rows = _write_days(lambda day: read_events_day(use_case, day, settings), days, out_dir, fmt)
    side_rows = {}
    for table in use_case.spec.event_schema.side_tables:
        side_rows[table] = _write_days(
            lambda day, table=table: read_side_day(use_case, table, day, settings),
            days,
            out_dir / table,
            fmt,
        )[1]
    return Export(use_case.name, out_dir, len(days), rows, side_rows)


def _atomic_write_csv(df: pd.DataFrame, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        df.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = [
    "Export",
    "SourceFileError",
    "daily_files",
    "export_days",
    "export_source",
    "read_events_day",
    "read_file",
    "read_raw_day",
    "read_side_day",
    "source_file",
    "write_frame",
]
