"""Monitoring inputs gathered from a Dask cluster: samples and aggregates, never whole tables.

- :func:`reference_sample`: the drift reference, the very rows the local
  ``drift.sample_reference`` draws from the concatenated days: the workers count each day's
  rows, this process draws the row numbers with the same generator, and each worker
  returns only its sampled rows.
- :func:`daily_performance`: labelled performance per (day, model version, source). A
  group never spans two days, so each worker joins one day's predictions with its matured
  labels and computes that day's metrics; only the metric rows come back.
- :func:`outcomes`: the joined prediction outcomes (a few narrow columns per row) for
  the metrics pooled over several days (trailing AP), computed per day on the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_platform.data import lake

if TYPE_CHECKING:
    from distributed import Client

    from ml_platform.settings import Settings


def _rows(lake_dir: Path, table: str, day: date | str) -> int:
    import pyarrow.parquet as pq

    path = lake.partition_path(lake_dir, table, day)
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def _take(
    lake_dir: Path, table: str, day: date | str, columns: list[str], rows: np.ndarray
) -> pd.DataFrame:
    frame = lake.read_partitions(lake_dir, table, [day])
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}.{missing[0]}: column required for the drift reference")
    return frame[columns].iloc[rows]


def reference_sample(
    client: Client,
    lake_dir: Path,
    table: str,
    days: Sequence[date | str],
    columns: Sequence[str],
    max_rows: int,
    seed: int = 0,
) -> pd.DataFrame:
    """``drift.sample_reference(<the days of table>[columns], max_rows, seed)`` with a
    fresh index, read by the workers (missing days count as empty, as ``missing_ok``)."""
    cols = list(columns)
    counts = np.array(
        client.gather(client.map(_rows, [lake_dir] * len(days), [table] * len(days), days)),
        dtype=np.int64,
    )
    total = int(counts.sum())
    if total == 0:
        raise FileNotFoundError(f"{table}: no rows in the {len(days)} day(s) of the reference")
    if total <= max_rows:
        picked = np.arange(total)
    else:  # DataFrame.sample(n, random_state=seed) draws exactly these row numbers
        picked = np.random.RandomState(seed).choice(total, size=max_rows, replace=False)
    starts = np.r_[0, np.cumsum(counts)]
    part = np.searchsorted(starts, picked, side="right") - 1
    futures, order = [], []
    for i in np.unique(part):
        where = np.flatnonzero(part == i)
        local = picked[where] - starts[i]
        futures.append(client.submit(_take, lake_dir, table, days[i], cols, local, pure=False))
        order.append(where)
    frames = client.gather(futures)
    out = pd.concat(frames, ignore_index=True)
    # back into the order the sample drew them
    position = np.empty(len(picked), dtype=np.int64)
    position[np.concatenate(order)] = np.arange(len(picked))
    return out.iloc[position].reset_index(drop=True)


def _day_performance(settings: Settings, day: date, k: int, use_case: str | None) -> pd.DataFrame:
    from ml_platform.monitoring import daily
    from ml_platform.monitoring import performance as perf

    outcomes = daily.outcomes_from_lake(settings, [day], use_case=use_case)
    return perf.daily_performance(outcomes, k=k, use_case=use_case)


def _day_outcomes(settings: Settings, day: date, use_case: str | None) -> pd.DataFrame:
    from ml_platform.monitoring import daily

    return daily.outcomes_from_lake(settings, [day], use_case=use_case)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    rows = [f for f in frames if len(f)]
    return pd.concat(rows, ignore_index=True) if rows else frames[0].reset_index(drop=True)


def daily_performance(
    client: Client,
    settings: Settings,
    days: Sequence[date],
    k: int = 100,
    use_case: str | None = None,
) -> pd.DataFrame:
    """``performance.daily_performance(daily.outcomes_from_lake(settings, days), k)``, one
    day per worker task."""
    n = len(days)
    return _concat(
        client.gather(
            client.map(_day_performance, [settings] * n, days, [k] * n, [use_case] * n, pure=False)
        )
    )


def outcomes(
    client: Client, settings: Settings, days: Sequence[date], use_case: str | None = None
) -> pd.DataFrame:
    """``daily.outcomes_from_lake(settings, days)``, joined per day on the workers."""
    n = len(days)
    futures = client.map(_day_outcomes, [settings] * n, days, [use_case] * n, pure=False)
    return _concat(client.gather(futures))
