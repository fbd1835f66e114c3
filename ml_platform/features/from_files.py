"""Batch features of a folder of daily files: read, validate, compute, write.

Why it exists: a team with its data on disk (``YYYY-MM-DD.parquet|csv`` per day, a side
table's days under ``<table>/``) wants the training features of a use case without running
the pipeline. This is what ``ml-platform features`` runs: every day is validated against
the declaration (bad rows are quarantined, not featured, and counted by reason), then the
batch engine computes the declared features over all valid days at once (every row is
history for the later ones), and the event id + feature columns are written. Nothing here
names a column: the roles come from the use case.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_platform.data.sources import FORMATS, daily_files, read_file, write_frame
from ml_platform.data.validation import (
    reason_counts,
    validate_events,
    validate_side_rows,
)
from ml_platform.settings import get_settings
from ml_platform.use_cases.loader import UseCase, engine_label_delay

if TYPE_CHECKING:
    from distributed import Client


@dataclass(frozen=True)
class ValidDays:
    """The valid events of a folder's days, each side table's valid rows, what was refused."""

    events: pd.DataFrame
    side_tables: dict[str, pd.DataFrame]
    days: int
    quarantined: int
    #: events and side tables: reason -> rows (a row may count for several reasons)
    reasons: dict[str, int] = field(default_factory=dict)


def read_valid_days(use_case: UseCase, source_dir: Path) -> ValidDays:
    """Every daily file of ``source_dir`` (and of ``source_dir/<table>/`` per side table)
    validated as its day's partition; the valid rows concatenated in day order."""
    source_dir = Path(source_dir)
    files = daily_files(source_dir)
    if not files:
        raise FileNotFoundError(
            f"{source_dir}: no daily files (YYYY-MM-DD.parquet or YYYY-MM-DD.csv)"
        )
    reasons: Counter[str] = Counter()
    quarantined = 0
    valid = []
    for day, path in files.items():
        good, bad = validate_events(read_file(path), day, use_case)
        valid.append(good)
        quarantined += len(bad)
        reasons.update(reason_counts(bad))
    side: dict[str, pd.DataFrame] = {}
    for table in use_case.spec.event_schema.side_tables:
        folder = source_dir / table
        rows = []
        for day, path in (daily_files(folder) if folder.is_dir() else {}).items():
            good, bad = validate_side_rows(read_file(path), day, table, use_case)
            rows.append(good)
            quarantined += len(bad)
            reasons.update({f"{table}.{k}": v for k, v in reason_counts(bad).items()})
        if not rows:
            raise FileNotFoundError(
                f"{folder}: no daily files of side table {table!r} "
                "(YYYY-MM-DD.parquet or YYYY-MM-DD.csv)"
            )
        side[table] = pd.concat(rows, ignore_index=True)
    events = pd.concat(valid, ignore_index=True)
    return ValidDays(events, side, len(files), quarantined, dict(sorted(reasons.items())))


@dataclass(frozen=True)
class FeaturesRun:
    """What ``features_from_files`` did: the JSON line ``ml-platform features`` prints."""

    use_case: str
    rows: int
    quarantined: int
    seconds: dict[str, float]
    reasons: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "use_case": self.use_case,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "seconds": self.seconds,
        }


def check_output(out: Path) -> Path:
    """The output file's format from its suffix, checked before any work is done."""
    out = Path(out)
    if out.suffix.removeprefix(".") not in FORMATS:
        raise ValueError(f"--out: {out}: the file must end in .parquet or .csv")
    return out


def features_from_files(
    use_case: UseCase, source_dir: Path, out: Path, *, client: Client | None = None
) -> FeaturesRun:
    """Validate every daily file of ``source_dir``, compute the use case's batch features
    of the valid events and write the event id + feature columns to ``out`` (by suffix);
    on the Dask cluster of ``client`` when given (the same values, bit for bit)."""
    from ml_platform.features.batch import build_features  # numpy engine: imported on use

    out = check_output(out)
    t0 = time.perf_counter()
    data = read_valid_days(use_case, source_dir)
    t1 = time.perf_counter()
    kwargs: dict[str, Any] = {"use_case": use_case}
    if data.side_tables:
        kwargs["side_tables"] = data.side_tables
    kwargs["label_delay_days"] = engine_label_delay(use_case, get_settings().label_delay_days)
    features = build_features(data.events, client=client, **kwargs)
    t2 = time.perf_counter()
    write_frame(features, out)
    t3 = time.perf_counter()
    seconds = {"read": t1 - t0, "features": t2 - t1, "write": t3 - t2}
    return FeaturesRun(
        use_case.name,
        len(features),
        data.quarantined,
        {k: round(v, 3) for k, v in seconds.items()},
        data.reasons,
    )
