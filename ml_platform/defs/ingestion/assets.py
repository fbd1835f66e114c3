"""Ingestion assets: raw events in, validated rows and a quarantine out.

Thin wrappers over ``ml_platform.data`` (sources, validation). Every asset is daily
partitioned with a single-run backfill policy, so a range materializes in one run that
returns ``{partition_key: DataFrame}`` to the lake IO manager. :func:`build_ingestion_assets`
builds them for one use case (keys ``<name>_raw_events``, ``<name>_validated_events``,
``<name>_quarantined_events``, group ``<name>_ingestion``).
"""

import time
from datetime import date

import dagster as dg
import pandas as pd

from ml_platform.data import contract as c
from ml_platform.data import lake
from ml_platform.data.sources import read_raw_day
from ml_platform.data.validation import reason_counts, validate_transactions
from ml_platform.defs import names
from ml_platform.defs.context import StageContext

OWNERS = ["team:data-platform"]


def _fraud_rate(frames: dict[str, pd.DataFrame]) -> float | None:
    labels = [f[c.TX_FRAUD] for f in frames.values() if c.TX_FRAUD in f and len(f)]
    if not labels:
        return None
    y = pd.to_numeric(pd.concat(labels), errors="coerce")
    return round(float(y.mean()), 6) if y.notna().any() else None


def build_ingestion_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Raw events and the validation multi-asset (validated + quarantined + its check)."""
    s = ctx.settings
    group = ctx.name(names.INGESTION)
    raw_key = ctx.key(names.RAW_EVENTS)
    valid_key = ctx.key(names.VALIDATED_EVENTS)
    check_name = ctx.name(names.QUARANTINE_CHECK)
    raw_table = names.lake_table(names.RAW_EVENTS)

    @dg.asset(
        key=raw_key,
        group_name=group,
        owners=OWNERS,
        kinds={"python", "parquet"},
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata=ctx.metadata(names.RAW_EVENTS),
        description=(
            "Raw events, one partition per day, exactly as the source delivered them (extra "
            "columns kept, nothing coerced). Source: the built-in simulator "
            "(ML_PLATFORM_SOURCE=simulator, deterministic per day from the seed) or daily "
            "files YYYY-MM-DD.parquet/.csv in ML_PLATFORM_SOURCE_DIR; a missing or unreadable "
            "file fails the partition naming the file. Stored at "
            f"<data_dir>/lake/{raw_table}/date=YYYY-MM-DD/data.parquet."
        ),
    )
    def raw_events(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
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

    valid_table = names.lake_table(names.VALIDATED_EVENTS)
    quarantine_table = names.lake_table(names.QUARANTINED_EVENTS)

    @dg.multi_asset(
        name=ctx.name(names.VALIDATE_EVENTS),
        group_name=group,
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[raw_events],
        required_resource_keys={"io_manager"},
        outs={
            names.VALIDATED_EVENTS: dg.AssetOut(
                key=valid_key,
                owners=OWNERS,
                kinds={"pandera", "parquet"},
                metadata=ctx.metadata(names.VALIDATED_EVENTS),
                description=(
                    "Raw events that pass the contract (pandera schema from "
                    "ml_platform/data/contract.py), in contract dtypes: the event id unique, "
                    "the event time inside the partition day, every rule of the schema; extra "
                    f"columns kept. Stored at <data_dir>/lake/{valid_table}/date=*/. Check "
                    f"{check_name}: fails when any day's quarantined share exceeds "
                    "ML_PLATFORM_QUARANTINE_MAX_SHARE (default 1%)."
                ),
            ),
            names.QUARANTINED_EVENTS: dg.AssetOut(
                key=ctx.key(names.QUARANTINED_EVENTS),
                owners=OWNERS,
                kinds={"pandera", "parquet"},
                metadata=ctx.metadata(names.QUARANTINED_EVENTS),
                description=(
                    "Rows that broke a contract rule, kept as the text received, with `reason` "
                    "(every failed rule, e.g. '<column>: negative') and `partition_date`. "
                    "Duplicated event ids keep the first valid copy. Stored at "
                    f"<data_dir>/lake/{quarantine_table}/date=*/."
                ),
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                check_name,
                asset=valid_key,
                description="Quarantined share of every day <= ML_PLATFORM_QUARANTINE_MAX_SHARE.",
            )
        ],
    )
    def validate_events(context: dg.AssetExecutionContext):
        lake_dir = context.resources.io_manager.lake_dir
        t0 = time.perf_counter()
        valid, quarantined, shares = {}, {}, {}
        for key in context.partition_keys:
            raw = lake.read_partitions(lake_dir, raw_table, [key])
            valid[key], quarantined[key] = validate_transactions(raw, key)
            shares[key] = len(quarantined[key]) / len(raw) if len(raw) else 0.0
        seconds = round(time.perf_counter() - t0, 3)

        all_q = pd.concat(quarantined.values(), ignore_index=True)
        reasons = reason_counts(all_q)
        n_valid = sum(len(v) for v in valid.values())
        total = n_valid + len(all_q)
        yield dg.Output(
            valid,
            output_name=names.VALIDATED_EVENTS,
            metadata={
                "fraud_rate": _fraud_rate(valid),
                "quarantined": len(all_q),
                "seconds": seconds,
            },
        )
        yield dg.Output(
            quarantined,
            output_name=names.QUARANTINED_EVENTS,
            metadata={"quarantined_by_reason": dg.MetadataValue.json(reasons)},
        )
        over = {k: round(v, 6) for k, v in shares.items() if v > s.quarantine_max_share}
        worst = max(shares, key=shares.get)
        yield dg.AssetCheckResult(
            asset_key=valid_key,
            check_name=check_name,
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

    return [raw_events, validate_events]
