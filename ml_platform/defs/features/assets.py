"""Feature assets: thin wrappers over ``ml_platform.features`` (batch engine, online store).

Both read ``validated_transactions`` with a look-back of the longest window plus the label
delay, so every partition sees the history its features need.
"""

import time

import dagster as dg
import pandas as pd

from ml_platform.data import lake
from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID, TRANSACTION_ID, TX_DATETIME
from ml_platform.defs.partitions import daily_partitions, lookback_mapping
from ml_platform.features import (
    FEATURE_COLUMNS,
    FEATURE_VERSION,
    build_features_for_days,
    horizon_days,
)
from ml_platform.settings import get_settings

GROUP = "features"
OWNERS = ["team:ml-platform"]
KEY_COLUMNS = [TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID]
LOOKBACK_DAYS = horizon_days(get_settings().label_delay_days)


def _lookback_in() -> dg.AssetIn:
    return dg.AssetIn("validated_transactions", partition_mapping=lookback_mapping(LOOKBACK_DAYS))


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"validated_transactions": _lookback_in()},
    description=(
        "Point-in-time features of every validated transaction (batch engine, "
        "ml_platform/features/batch.py): transaction_id, tx_datetime, customer_id, terminal_id "
        "and FEATURE_COLUMNS. Customer windows (t-w, t]; terminal windows shifted back by the "
        "label delay. Reads the look-back partitions, writes only its own days."
    ),
)
def transaction_features(
    context: dg.AssetExecutionContext, validated_transactions: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    s = get_settings()
    t0 = time.perf_counter()
    tx = validated_transactions
    keys = list(context.partition_keys)
    if tx.empty:
        return {k: pd.DataFrame(columns=KEY_COLUMNS + FEATURE_COLUMNS) for k in keys}
    # the look-back is history only: no features are computed for it
    out = build_features_for_days(tx, keys, label_delay_days=s.label_delay_days)
    parts = lake.split_by_day(out, keys)
    context.add_output_metadata(
        {
            "feature_version": FEATURE_VERSION,
            "n_features": len(FEATURE_COLUMNS),
            "lookback_rows": len(tx),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return parts


@dg.asset(
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "redis", "sqlite"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"validated_transactions": _lookback_in()},
    deps=[transaction_features],
    description=(
        "Entity state the online engine needs, as of the end of the partition range: each "
        "customer's and terminal's transactions within the longest window plus the label "
        "delay, with matured fraud labels. Replaces the store's content (ML_PLATFORM_"
        "ONLINE_STORE: sqlite file under the data dir, or redis)."
    ),
)
def online_feature_store(
    context: dg.AssetExecutionContext, validated_transactions: pd.DataFrame
) -> dg.MaterializeResult:
    from ml_platform.features.stores import open_store

    s = get_settings()
    t0 = time.perf_counter()
    as_of = pd.Timestamp(context.partition_time_window.end)
    as_of = (as_of.tz_convert("UTC").tz_localize(None) if as_of.tzinfo else as_of) - pd.Timedelta(
        1, "ns"
    )
    with open_store(s) as store:
        stats = store.load(validated_transactions, as_of)
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
