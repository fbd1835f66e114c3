"""Feature assets: thin wrappers over ``ml_platform.features`` (batch engine, online store).

Both read the validated events with a look-back of the feature set's horizon (the longest
window plus the label's delay, or its ``known_within`` for a per-row label), so every
partition sees the history its features need; a use case with side tables (flights'
weather) also reads each with its own look-back (the as-of joins' oldest age plus the
publication delay). :func:`build_feature_assets` builds them for one use case
(``<name>_event_features``, ``<name>_online_feature_store``).

The batch features read their look-back themselves: with the compute resource on Dask the
lake partitions are read, featured (entity-sharded) and written on the workers
(``features/sharded.py``), so the look-back never passes through this process.
"""

import math
import time
from datetime import timedelta

import dagster as dg
import pandas as pd

from ml_platform.data import lake
from ml_platform.defs import names
from ml_platform.defs.context import StageContext
from ml_platform.defs.partitions import lookback_mapping
from ml_platform.features import build_features_for_days, feature_set, horizon_days
from ml_platform.features.definitions import DAY_NS
from ml_platform.features.sharded import lake_features
from ml_platform.use_cases.loader import engine_label_delay

OWNERS = ["team:ml-platform"]


def _side_days(context: dg.AssetExecutionContext, lookback: int) -> list[str]:
    """The run's partition days and the ``lookback`` days before them (ISO dates)."""
    window = context.partition_time_window
    first = window.start.date() - timedelta(days=lookback)
    n = (window.end.date() - first).days
    return [(first + timedelta(days=i)).isoformat() for i in range(n)]


def build_feature_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Batch features per day and the online store as of the range's end."""
    s = ctx.settings
    uc = ctx.use_case
    fs = feature_set(uc)
    group = ctx.name(names.FEATURES)
    validated = ctx.key(names.VALIDATED_EVENTS)
    delay = engine_label_delay(uc, s.label_delay_days)
    lookback_days = horizon_days(delay, uc)
    key_columns = [fs.event_id, fs.event_time, *fs.entity_columns]
    #: side table -> (its lake table, its look-back in days)
    sides = {
        t.name: (ctx.table(t.name), math.ceil(fs.side_horizon_ns(t.name) / DAY_NS))
        for t in fs.side_tables
    }
    side_deps = [
        dg.AssetDep(ctx.key(name), partition_mapping=lookback_mapping(days))
        for name, (_, days) in sides.items()
    ]

    def lookback_in(**kwargs: object) -> dg.AssetIn:
        return dg.AssetIn(validated, partition_mapping=lookback_mapping(lookback_days), **kwargs)

    events_table = ctx.table(names.VALIDATED_EVENTS)
    features_table = ctx.table(names.EVENT_FEATURES)

    def side_tables(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame] | None:
        """Each side table's rows over the run's days and their look-back (None: none)."""
        if not sides:
            return None
        lake_dir = context.resources.io_manager.lake_dir
        return {
            name: lake.read_partitions(lake_dir, table, _side_days(context, days), missing_ok=True)
            for name, (table, days) in sides.items()
        }

    side_help = f" Joins side table(s) {', '.join(sides)} as of each event's time." if sides else ""

    @dg.asset(
        key=ctx.key(names.EVENT_FEATURES),
        group_name=group,
        owners=OWNERS,
        kinds={"python", "parquet"},
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"validated": lookback_in(dagster_type=dg.Nothing)},  # read in the body
        deps=side_deps,
        required_resource_keys={"io_manager", names.COMPUTE_RESOURCE},
        metadata=ctx.metadata(names.EVENT_FEATURES),
        description=(
            "Point-in-time features of every validated event (batch engine, "
            "ml_platform/features/batch.py): the event's keys and the use case's feature "
            "columns. Entity windows (t-w, t]; windows over the label end where labels are "
            "known. Reads the look-back partitions, writes only its own days. On Dask "
            "(ML_PLATFORM_COMPUTE=dask) the workers read, compute (sharded by entity, "
            "bit-identical) and write the partitions." + side_help
        ),
    )
    def event_features(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame] | None:
        t0 = time.perf_counter()
        keys = list(context.partition_keys)
        lookback = context.asset_partition_keys_for_input("validated")
        lake_dir = context.resources.io_manager.lake_dir
        client = getattr(context.resources, names.COMPUTE_RESOURCE).get_client()
        metadata = {"feature_version": fs.version, "n_features": len(fs.columns)}
        if client is not None:
            stats = lake_features(
                client,
                lake_dir,
                events_table,
                lookback,
                keys,
                features_table,
                fs,
                delay,
                side_tables=side_tables(context),
            )
            if stats["rows_read"]:
                context.add_output_metadata(
                    {
                        **metadata,
                        "compute": "dask",
                        "lookback_rows": stats["rows_read"],
                        "dagster/row_count": stats["rows"],
                        "partitions": len(keys),
                        "seconds": round(time.perf_counter() - t0, 3),
                    }
                )
                return None  # written by the workers
        validated = lake.read_partitions(lake_dir, events_table, lookback, missing_ok=True)
        if validated.empty:
            return {k: pd.DataFrame(columns=key_columns + fs.columns) for k in keys}
        # the look-back is history only: no features are computed for it
        out = build_features_for_days(
            validated, keys, label_delay_days=delay, use_case=uc, side_tables=side_tables(context)
        )
        parts = lake.split_by_day(out, keys, column=fs.event_time)
        context.add_output_metadata(
            {
                **metadata,
                "compute": "local",
                "lookback_rows": len(validated),
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        return parts

    @dg.asset(
        key=ctx.key(names.ONLINE_FEATURE_STORE),
        group_name=group,
        owners=OWNERS,
        kinds={"python", "redis", "sqlite"},
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"validated": lookback_in()},
        deps=[event_features, *side_deps],
        required_resource_keys={"io_manager"},
        metadata=ctx.tags(),
        description=(
            "Entity state the online engine needs, as of the end of the partition range: each "
            "entity's events within the feature horizon, with the labels known by then"
            + (" and the side tables' recent rows" if sides else "")
            + ". Replaces the store's content (ML_PLATFORM_ONLINE_STORE: sqlite file under "
            "the data dir, or redis)."
        ),
    )
    def online_feature_store(
        context: dg.AssetExecutionContext, validated: pd.DataFrame
    ) -> dg.MaterializeResult:
        from ml_platform.features.stores import open_store

        t0 = time.perf_counter()
        as_of = pd.Timestamp(context.partition_time_window.end)
        as_of = (
            as_of.tz_convert("UTC").tz_localize(None) if as_of.tzinfo else as_of
        ) - pd.Timedelta(1, "ns")
        with open_store(s, label_delay_days=delay, use_case=uc) as store:
            stats = store.load(validated, as_of, side_tables=side_tables(context))
        per_entity = {f"entities_{c}": stats[c] for c in fs.entity_columns}
        return dg.MaterializeResult(
            metadata={
                "store": s.online_store,
                "as_of": str(as_of),
                "entities": sum(per_entity.values()),
                **per_entity,
                "rows": stats["rows"],
                "known_labels": stats["labels"],
                **{k: v for k, v in stats.items() if k.startswith("side_")},
                "feature_version": fs.version,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )

    return [event_features, online_feature_store]
