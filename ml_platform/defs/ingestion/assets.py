"""Ingestion assets: raw transactions in, validated rows and a quarantine out.

Thin wrappers over ``ml_platform.data`` (sources, validation). Every asset is daily
partitioned with a single-run backfill policy, so a range materializes in one run that
returns ``{partition_key: DataFrame}`` to the lake IO manager.
"""

import time
from datetime import date

import dagster as dg
import pandas as pd

from ml_platform.data import contract as c
from ml_platform.data import lake
from ml_platform.data.sources import read_raw_day
from ml_platform.data.validation import reason_counts, validate_transactions
from ml_platform.defs.partitions import daily_partitions
from ml_platform.settings import get_settings

GROUP = "ingestion"
OWNERS = ["team:data-platform"]
CHECK_NAME = "quarantine_share_within_limit"


def _fraud_rate(frames: dict[str, pd.DataFrame]) -> float | None:
    labels = [f[c.TX_FRAUD] for f in frames.values() if c.TX_FRAUD in f and len(f)]
    if not labels:
        return None
    y = pd.to_numeric(pd.concat(labels), errors="coerce")
    return round(float(y.mean()), 6) if y.notna().any() else None


@dg.asset(
    key="raw_transactions",
    group_name=GROUP,
    owners=OWNERS,
    kinds={"python", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description=(
        "Raw card transactions, one partition per day, exactly as the source delivered them "
        "(extra columns kept, nothing coerced). Source: the built-in simulator "
        "(ML_PLATFORM_SOURCE=simulator, deterministic per day from the seed) or daily files "
        "YYYY-MM-DD.parquet/.csv in ML_PLATFORM_SOURCE_DIR; a missing or unreadable file "
        "fails the partition naming the file. Stored at "
        "<data_dir>/lake/raw_transactions/date=YYYY-MM-DD/data.parquet."
    ),
)
def raw_transactions(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
    s = get_settings()
    t0 = time.perf_counter()
    out = {key: read_raw_day(date.fromisoformat(key), s) for key in context.partition_keys}
    context.add_output_metadata(
        {
            "source": s.source if s.source == "simulator" else f"files: {s.source_dir}",
            "fraud_rate": _fraud_rate(out),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    )
    return out


@dg.multi_asset(
    name="validate_transactions",
    group_name=GROUP,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[raw_transactions],
    required_resource_keys={"io_manager"},
    outs={
        "validated_transactions": dg.AssetOut(
            owners=OWNERS,
            kinds={"pandera", "parquet"},
            description=(
                "Raw transactions that pass the contract (pandera schema from "
                "ml_platform/data/contract.py), in contract dtypes: transaction_id int64 "
                "unique, tx_datetime datetime64[ns] inside the partition day, customer_id and "
                "terminal_id int64 >= 0, tx_amount float64 finite >= 0, tx_fraud int8 0/1; extra "
                "columns kept. Stored at <data_dir>/lake/validated_transactions/date=*/. "
                f"Check {CHECK_NAME}: fails when any day's quarantined share exceeds "
                "ML_PLATFORM_QUARANTINE_MAX_SHARE (default 1%)."
            ),
        ),
        "quarantined_transactions": dg.AssetOut(
            owners=OWNERS,
            kinds={"pandera", "parquet"},
            description=(
                "Rows that broke a contract rule, kept as the text received, with `reason` "
                "(every failed rule, e.g. 'tx_amount: negative; tx_fraud: not 0/1') and "
                "`partition_date`. Duplicated transaction ids keep the first valid copy. "
                "Stored at <data_dir>/lake/quarantined_transactions/date=*/."
            ),
        ),
    },
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset="validated_transactions",
            description="Quarantined share of every day <= ML_PLATFORM_QUARANTINE_MAX_SHARE.",
        )
    ],
)
def validate_transactions_assets(context: dg.AssetExecutionContext):
    s = get_settings()
    lake_dir = context.resources.io_manager.lake_dir
    t0 = time.perf_counter()
    valid, quarantined, shares = {}, {}, {}
    for key in context.partition_keys:
        raw = lake.read_partitions(lake_dir, "raw_transactions", [key])
        valid[key], quarantined[key] = validate_transactions(raw, key)
        shares[key] = len(quarantined[key]) / len(raw) if len(raw) else 0.0
    seconds = round(time.perf_counter() - t0, 3)

    all_q = pd.concat(quarantined.values(), ignore_index=True)
    reasons = reason_counts(all_q)
    n_valid = sum(len(v) for v in valid.values())
    total = n_valid + len(all_q)
    yield dg.Output(
        valid,
        output_name="validated_transactions",
        metadata={
            "fraud_rate": _fraud_rate(valid),
            "quarantined": len(all_q),
            "seconds": seconds,
        },
    )
    yield dg.Output(
        quarantined,
        output_name="quarantined_transactions",
        metadata={"quarantined_by_reason": dg.MetadataValue.json(reasons)},
    )
    over = {k: round(v, 6) for k, v in shares.items() if v > s.quarantine_max_share}
    worst = max(shares, key=shares.get)
    yield dg.AssetCheckResult(
        asset_key="validated_transactions",
        check_name=CHECK_NAME,
        passed=not over,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "quarantined": len(all_q),
            "rows": total,
            "share": round(len(all_q) / total, 6) if total else 0.0,
            "max_share": s.quarantine_max_share,
            "worst_day": worst,
            "worst_day_share": round(shares[worst], 6),
            "days_over_limit": dg.MetadataValue.json(over),
            "quarantined_by_reason": dg.MetadataValue.json(reasons),
        },
    )
