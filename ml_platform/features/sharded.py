"""Batch features on a Dask cluster: entity-sharded, bit-identical to the local engine.

Why: the local engine holds the whole look-back and its output in one process. A row's
window features depend only on its own entity's rows (the engine's sums restart at every
entity), so for each entity the events are shuffled into shards by the hash of that entity's
key (``DataFrame.shuffle``: all of an entity's rows land in one shard), each shard's features
of that entity are computed by the same numpy engine (``batch.build_features`` on a feature
set restricted to them), and the pieces are joined back per event by its row number. Row
features (event values, calendar flags, as-of joins) ride with the first entity's shards;
a use case without window features is sharded by event id.

Every piece is range-partitioned on a part number (``set_index`` with known divisions): a day
of the lake, or a block of the input rows. A part's pieces are aligned by row number, so the
output of a part is in input order, exactly as the local engine returns it. Lake tables are
read per partition on the workers and written per day from the workers: the driver only
lists files and sees row counts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.features.definitions import (
    CALENDAR_AGGREGATES,
    FeatureDef,
    FeatureSet,
    check_label_delay,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

#: Bookkeeping columns carried through the shuffles (no use case column starts with "__").
ROW = "__row"  # the event's position in the whole input (input order)
PART = "__part"  # the output part it belongs to, -1 for history only
WANTED = "__wanted"  # whether its features are asked for
#: Events per shard: bounds a worker's engine memory (~0.3 KB per event and feature group).
SHARD_ROWS = 500_000
#: From this many events on, shuffles go through Dask's P2P extension (streamed, spilled to
#: disk: bounded memory); below, the task-based shuffle (in memory, less overhead).
P2P_ROWS = 4_000_000
#: Aggregates of the row alone (no entity window): computed with the first entity's shards.
ROW_AGGREGATES = ("value", "asof", *CALENDAR_AGGREGATES)


@dataclasses.dataclass(frozen=True)
class Piece:
    """The features computed on the shards of one key column, and whether this piece also
    carries the event keys (event time, entity keys) of the output."""

    key: str
    features: FeatureSet
    carries_keys: bool


def plan(fs: FeatureSet) -> list[Piece]:
    """One piece per entity with window features (declaration order); row features go with
    the first, or alone on shards of the event id when no feature has a window."""
    windowed: dict[str, list[FeatureDef]] = {}
    for f in fs.features:
        if f.aggregate not in ROW_AGGREGATES:
            windowed.setdefault(f.entity, []).append(f)
    row = [f for f in fs.features if f.aggregate in ROW_AGGREGATES]
    keys = list(windowed) or [fs.event_id]
    pieces = []
    for i, key in enumerate(keys):
        own = windowed.get(key, []) + (row if i == 0 else [])
        pieces.append(Piece(key, dataclasses.replace(fs, features=tuple(own)), i == 0))
    return pieces


def shuffle_method(rows: int) -> str:
    """``p2p`` for large inputs (bounded worker memory), ``tasks`` for small ones."""
    return "p2p" if rows >= P2P_ROWS else "tasks"


def shard_count(client: Client, rows: int, shard_rows: int = SHARD_ROWS) -> int:
    """At least one shard per worker, and no shard above ``shard_rows`` events on average."""
    workers = max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
    return max(workers, math.ceil(rows / max(1, shard_rows)))


@contextmanager
def _dask_config() -> Iterator[None]:
    """Object columns stay object (the local engine's dtypes): no conversion to Arrow strings."""
    import dask

    with dask.config.set({"dataframe.convert-string": False}):
        yield


def _output_columns(fs: FeatureSet, with_keys: bool) -> list[str]:
    keys = [fs.event_time, *fs.entity_columns] if with_keys else []
    return [fs.event_id, *keys, *fs.columns]


def _piece_meta(events_meta: pd.DataFrame, piece: Piece, with_keys: bool) -> pd.DataFrame:
    fs = piece.features
    id_dtype = np.int64 if events_meta[fs.event_id].dtype.kind in "iub" else object
    cols: dict[str, Any] = {PART: np.int64, ROW: np.int64, fs.event_id: id_dtype}
    if with_keys and piece.carries_keys:
        for col in (fs.event_time, *fs.entity_columns):
            cols[col] = events_meta[col].dtype
    cols.update({c: np.float64 for c in fs.columns})
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})


def _shard_features(
    shard: pd.DataFrame,
    piece: Piece,
    label_delay_days: int,
    side_tables: Mapping[str, pd.DataFrame] | None,
    meta: pd.DataFrame,
) -> pd.DataFrame:
    """One shard: the piece's features of its wanted events, by the local engine."""
    from ml_platform.features.batch import build_features

    wanted = shard[WANTED].to_numpy(bool)
    if not wanted.any():
        return meta
    events = shard.reset_index(drop=True)
    out = build_features(
        events,
        label_delay_days,
        rows=wanted,
        use_case=piece.features,
        side_tables=side_tables if piece.carries_keys else None,
    )
    out.insert(0, PART, events[PART].to_numpy()[wanted])
    out.insert(1, ROW, events[ROW].to_numpy()[wanted])
    # the event keys, after the event id (as build_features_for_days inserts them)
    keys = meta.columns[3 : len(meta.columns) - len(piece.features.columns)]
    for i, col in enumerate(keys, start=3):
        out.insert(i, col, events[col].to_numpy()[wanted])
    return out


def _join_part(*pieces: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One part's pieces side by side, in input order (by row number)."""
    ordered = [p.sort_values(ROW, kind="stable") for p in pieces]
    rows = ordered[0][ROW].to_numpy()
    for p in ordered[1:]:
        if not np.array_equal(p[ROW].to_numpy(), rows):
            raise RuntimeError("sharded features: pieces of a part do not cover the same events")
    source = {c: p for p in reversed(ordered) for c in p.columns}
    return pd.DataFrame(
        {c: source[c][c].to_numpy() for c in columns}, index=pd.RangeIndex(len(rows))
    )


def features_by_part(
    events: dd.DataFrame,
    fs: FeatureSet,
    label_delay_days: int,
    n_parts: int,
    shards: int,
    *,
    side_tables: Mapping[str, pd.DataFrame] | None = None,
    with_keys: bool = False,
    method: str = "tasks",
) -> dd.DataFrame:
    """The wanted events' features, partition ``i`` = part ``i`` in input order.

    ``events`` holds the feature set's input columns plus ``ROW``, ``PART``, ``WANTED``
    (any partitioning); ``method`` is the shuffle method. Nothing is computed here: the
    graph is returned.
    """
    import dask
    import dask.dataframe as dd

    d = check_label_delay(label_delay_days)
    side = dask.delayed(dict(side_tables), pure=True) if side_tables else None
    divisions = tuple(range(n_parts + 1))
    parts = []
    for piece in plan(fs):
        meta = _piece_meta(events._meta, piece, with_keys)
        needed = list(dict.fromkeys([*piece.features.input_columns, ROW, PART, WANTED]))
        sharded = events[needed].shuffle(on=piece.key, npartitions=shards, shuffle_method=method)
        computed = sharded.map_partitions(
            _shard_features, piece, d, side, meta, meta=meta, enforce_metadata=False
        )
        parts.append(computed.set_index(PART, divisions=divisions, shuffle_method=method))
    columns = _output_columns(fs, with_keys)
    meta = _join_part(*(p._meta for p in parts), columns=columns)
    return dd.map_partitions(_join_part, *parts, columns=columns, meta=meta, enforce_metadata=False)


def build_features_sharded(
    client: Client,
    transactions: pd.DataFrame,
    label_delay_days: int,
    rows: np.ndarray | None,
    fs: FeatureSet,
    side_tables: Mapping[str, pd.DataFrame] | None,
    *,
    with_keys: bool = False,
    shard_rows: int = SHARD_ROWS,
) -> pd.DataFrame:
    """``build_features`` of an in-memory frame on the cluster: the same frame, bit for bit."""
    import dask.dataframe as dd

    from ml_platform.features.batch import check_events

    check_events(transactions, fs)
    n = len(transactions)
    wanted = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if wanted.shape != (n,):
        raise ValueError(f"rows: expected a boolean mask of {n} rows, got shape {wanted.shape}")
    shards = shard_count(client, n, shard_rows)
    block = max(1, math.ceil(n / shards))
    events = transactions[list(fs.input_columns)].reset_index(drop=True)
    events[ROW] = np.arange(n, dtype=np.int64)
    events[PART] = events[ROW] // block
    events[WANTED] = wanted
    n_parts = max(1, math.ceil(n / block))
    with _dask_config():
        frame = dd.from_pandas(events, npartitions=n_parts, sort=False)
        graph = features_by_part(
            frame,
            fs,
            label_delay_days,
            n_parts,
            shards,
            side_tables=side_tables,
            with_keys=with_keys,
            method=shuffle_method(n),
        )
        out = client.compute(graph).result()
    return out.reset_index(drop=True)


def bit_identical(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """The parity this engine promises: the same columns, dtypes and rows, every float64
    with the same bits (``-0.0`` is not ``0.0``; a NaN equals only the same NaN)."""
    if list(a.columns) != list(b.columns) or list(a.dtypes) != list(b.dtypes) or len(a) != len(b):
        return False
    for col in a.columns:
        x, y = a[col].to_numpy(), b[col].to_numpy()
        same = (
            np.array_equal(x.view(np.int64), y.view(np.int64))
            if x.dtype == np.float64
            else np.array_equal(x, y)
        )
        if not same:
            return False
    return True


# --- the lake: partitions read and written on the workers -----------------------------------


def _read_partition(
    path: str,
    first_row: int,
    read: list[str],
    event_time: str,
    out_days: np.ndarray,
    meta: pd.DataFrame,
) -> pd.DataFrame:
    """One lake partition with its row numbers and output part (its event day among
    ``out_days``, -1 when history only)."""
    frame = pd.read_parquet(path, columns=read)
    day = frame[event_time].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    part = np.searchsorted(out_days, day)
    hit = out_days[np.minimum(part, len(out_days) - 1)] == day
    frame[ROW] = first_row + np.arange(len(frame), dtype=np.int64)
    frame[PART] = np.where(hit, part, -1).astype(np.int64)
    frame[WANTED] = hit
    return frame.astype(meta.dtypes.to_dict(), copy=False)


def _write_part(
    frame: pd.DataFrame, lake_dir: str, table: str, days: Sequence[str], partition_info=None
) -> pd.Series:
    """Write one part (a day) as its lake partition; its row count."""
    from ml_platform.data import lake

    day = days[partition_info["number"]]
    lake.write_partition(frame.reset_index(drop=True), Path(lake_dir), table, day)
    return pd.Series([len(frame)], dtype=np.int64)


def lake_features(
    client: Client,
    lake_dir: Path,
    events_table: str,
    read_days: Iterable[date | str],
    out_days: Sequence[str],
    out_table: str,
    fs: FeatureSet,
    label_delay_days: int,
    *,
    side_tables: Mapping[str, pd.DataFrame] | None = None,
    shard_rows: int = SHARD_ROWS,
) -> dict[str, int]:
    """Features of the events of ``out_days`` (every row of ``read_days`` is history) from
    the lake table ``events_table`` to one partition per day of ``out_table``, on the cluster.

    What ``build_features_for_days`` + a per-day write does locally (same columns, order and
    bits), without the look-back ever being in the driver: returns ``rows_read`` (the
    look-back) and ``rows`` (written).
    """
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    from ml_platform.data import lake

    paths, first_rows, total = [], [], 0
    for day in read_days:
        path = lake.partition_path(lake_dir, events_table, day)
        if not path.exists():
            continue
        rows = pq.read_metadata(path).num_rows
        if rows:  # an empty day's file has untyped columns: nothing to read
            paths.append(str(path))
            first_rows.append(total)
            total += rows
    out_days = list(out_days)
    if not paths:
        return {"rows_read": 0, "rows": 0}
    columns = list(fs.input_columns)
    meta = pq.read_schema(paths[0]).empty_table().to_pandas()
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise ValueError(f"{events_table}: missing column(s) {missing}")
    meta = meta[columns].assign(**{ROW: np.int64(0), PART: np.int64(0), WANTED: False}).iloc[:0]
    day_array = np.array(out_days, dtype="datetime64[D]")
    with _dask_config():
        events = dd.from_map(
            _read_partition,
            paths,
            first_rows,
            args=(columns, fs.event_time, day_array, meta),
            meta=meta,
            enforce_metadata=False,
        )
        graph = features_by_part(
            events,
            fs,
            label_delay_days,
            len(out_days),
            shard_count(client, total, shard_rows),
            side_tables=side_tables,
            with_keys=True,
            method=shuffle_method(total),
        )
        written = graph.map_partitions(
            _write_part,
            str(lake_dir),
            out_table,
            out_days,
            meta=pd.Series(dtype=np.int64),
            enforce_metadata=False,
        )
        counts = client.compute(written).result()
    return {"rows_read": total, "rows": int(counts.sum())}
