"""Feature assets: thin wrappers over ``ml_platform.features`` (batch engine, online store).

Both read the validated events with a look-back of the longest window plus the label
delay, so every partition sees the history its features need. :func:`build_feature_assets`
builds them for one use case (``<name>_event_features``, ``<name>_online_feature_store``).
"""

import time

import dagster as dg
import pandas as pd

from ml_platform.data import lake
from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_DATETIME
from ml_platform.defs import names
from ml_platform.defs.context import StageContext
from ml_platform.defs.partitions import lookback_mapping
from ml_platform.features import (
    FEATURE_COLUMNS,
    FEATURE_VERSION,
    build_features_for_days,
    horizon_days,
)

OWNERS = ["team:ml-platform"]
KEY_COLUMNS = [TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID]


def build_feature_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Batch features per day and the online store as of the range's end."""
    s = ctx.settings
    group = ctx.name(names.FEATURES)
    validated = ctx.key(names.VALIDATED_EVENTS)
    lookback_days = horizon_days(s.label_delay_days)

    def lookback_in() -> dg.AssetIn:
        return dg.AssetIn(validated, partition_mapping=lookback_mapping(lookback_days))

    @dg.asset(
        key=ctx.key(names.EVENT_FEATURES),
        group_name=group,
        owners=OWNERS,
        kinds={"python", "parquet"},
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"validated": lookback_in()},
        metadata=ctx.metadata(names.EVENT_FEATURES),
        description=(
            "Point-in-time features of every validated event (batch engine, "
            "ml_platform/features/batch.py): the event's keys and FEATURE_COLUMNS. Entity "
            "windows (t-w, t]; windows over the label shifted back by the label delay. Reads "
            "the look-back partitions, writes only its own days."
        ),
    )
    def event_features(
        context: dg.AssetExecutionContext, validated: pd.DataFrame
    ) -> dict[str, pd.DataFrame]:
        t0 = time.perf_counter()
        keys = list(context.partition_keys)
        if validated.empty:
            return {k: pd.DataFrame(columns=KEY_COLUMNS + FEATURE_COLUMNS) for k in keys}
        # the look-back is history only: no features are computed for it
        out = build_features_for_days(validated, keys, label_delay_days=s.label_delay_days)
        parts = lake.split_by_day(out, keys)
        context.add_output_metadata(
            {
                "feature_version": FEATURE_VERSION,
                "n_features": len(FEATURE_COLUMNS),
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
        deps=[event_features],
        metadata=ctx.tags(),
        description=(
            "Entity state the online engine needs, as of the end of the partition range: each "
            "entity's events within the longest window plus the label delay, with matured "
            "labels. Replaces the store's content (ML_PLATFORM_ONLINE_STORE: sqlite file under "
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
        with open_store(s) as store:
            stats = store.load(validated, as_of)
        return dg.MaterializeResult(
            metadata={
                "store": s.online_store,
                "as_of": str(as_of),
                "entities": stats["customer_id"] + stats["terminal_id"],
                "customers": stats["customer_id"],
                "terminals": stats["terminal_id"],
                "rows": stats["rows"],
                "matured_frauds": stats["labels"],
                "feature_version": FEATURE_VERSION,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )

    return [event_features, online_feature_store]
