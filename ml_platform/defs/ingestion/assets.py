"""Ingestion assets: raw events in, validated rows and a quarantine out.

Thin wrappers over ``ml_platform.data`` (sources, validation). Every asset is daily
partitioned with a single-run backfill policy, so a range materializes in one run that
returns ``{partition_key: DataFrame}`` to the lake IO manager. :func:`build_ingestion_assets`
builds them for one use case (keys ``<name>_raw_events``, ``<name>_validated_events``,
``<name>_quarantined_events``, group ``<name>_ingestion``), and for each side table it
declares (e.g. flights' weather) ``<name>_<table>`` and ``<name>_quarantined_<table>``, read
from the use case's source and validated by ``validate_side_rows``, with the same
quarantine check. The flagship reads the platform's source settings (``read_raw_day``),
any other use case its declared source (``read_events_day``) with its own settings.
"""

import time
from datetime import date

import dagster as dg
import pandas as pd

from ml_platform.data import lake, validation
from ml_platform.data.sources import read_events_day, read_raw_day, read_side_day
from ml_platform.defs import names
from ml_platform.defs.context import SIDE_TABLE_KEY, StageContext
from ml_platform.use_cases.loader import source_kind

OWNERS = ["team:data-platform"]


def _label_mean(frames: dict[str, pd.DataFrame], label: str) -> float | None:
    labels = [f[label] for f in frames.values() if label in f and len(f)]
    if not labels:
        return None
    y = pd.to_numeric(pd.concat(labels), errors="coerce")
    return round(float(y.mean()), 6) if y.notna().any() else None


def _label_metadata(ctx: StageContext, frames: dict[str, pd.DataFrame]) -> dict[str, object]:
    """The label's mean: the positive share of a binary label (the flagship's fraud rate)."""
    key = "fraud_rate" if ctx.is_flagship else "label_mean"
    return {key: _label_mean(frames, ctx.use_case.spec.label.column)}


def _quarantine_check(
    key: dg.AssetKey,
    check_name: str,
    shares: dict[str, float],
    quarantined: pd.DataFrame,
    total: int,
    max_share: float,
) -> dg.AssetCheckResult:
    """Fails when any day's quarantined share exceeds ``max_share``."""
    reasons = validation.reason_counts(quarantined)
    over = {k: round(v, 6) for k, v in shares.items() if v > max_share}
    worst = max(shares, key=shares.get)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=check_name,
        passed=not over,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "quarantined": len(quarantined),
            "rows": total,
            "share": round(len(quarantined) / total, 6) if total else 0.0,
            "max_share": max_share,
            "worst_day": worst,
            "worst_day_share": round(shares[worst], 6),
            "days_over_limit": dg.MetadataValue.json(over),
            "quarantined_by_reason": dg.MetadataValue.json(reasons),
        },
    )


def build_ingestion_assets(ctx: StageContext) -> list[dg.AssetsDefinition]:
    """Raw events and the validation multi-asset (validated + quarantined + its check),
    and one validation multi-asset per declared side table."""
    s = ctx.settings
    run = ctx.run
    uc = ctx.use_case
    group = ctx.name(names.INGESTION)
    raw_key = ctx.key(names.RAW_EVENTS)
    valid_key = ctx.key(names.VALIDATED_EVENTS)
    check_name = ctx.name(names.QUARANTINE_CHECK)
    raw_table = ctx.table(names.RAW_EVENTS)

    def read_day(key: str) -> pd.DataFrame:
        day = date.fromisoformat(key)
        return read_raw_day(day, s) if ctx.is_flagship else read_events_day(uc, day, ctx.resolved)

    def source_label() -> str:
        if ctx.is_flagship:
            return s.source if s.source == "simulator" else f"files: {s.source_dir}"
        kind = source_kind(uc, ctx.resolved)
        return f"files: {ctx.resolved.source_dir}" if kind == "files" else kind

    source_help = (
        "Source: the built-in simulator (ML_PLATFORM_SOURCE=simulator, deterministic per day "
        "from the seed) or daily files YYYY-MM-DD.parquet/.csv in ML_PLATFORM_SOURCE_DIR"
        if ctx.is_flagship
        else f"Source: the use case's declared default ({uc.spec.source.default}, or "
        f"{uc.env_prefix}SOURCE; daily files YYYY-MM-DD.parquet/.csv in "
        f"{uc.env_prefix}SOURCE_DIR when it is files)"
    )

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
            f"columns kept, nothing coerced). {source_help}; a missing or unreadable "
            "file fails the partition naming the file. Stored at "
            f"<data_dir>/lake/{raw_table}/date=YYYY-MM-DD/data.parquet."
        ),
    )
    def raw_events(context: dg.AssetExecutionContext) -> dict[str, pd.DataFrame]:
        t0 = time.perf_counter()
        out = {key: read_day(key) for key in context.partition_keys}
        context.add_output_metadata(
            {
                "source": source_label(),
                **_label_metadata(ctx, out),
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        return out

    valid_table = ctx.table(names.VALIDATED_EVENTS)
    quarantine_table = ctx.table(names.QUARANTINED_EVENTS)

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
            valid[key], quarantined[key] = validation.validate_events(raw, key, uc)
            shares[key] = len(quarantined[key]) / len(raw) if len(raw) else 0.0
        seconds = round(time.perf_counter() - t0, 3)

        all_q = pd.concat(quarantined.values(), ignore_index=True)
        reasons = validation.reason_counts(all_q)
        n_valid = sum(len(v) for v in valid.values())
        total = n_valid + len(all_q)
        yield dg.Output(
            valid,
            output_name=names.VALIDATED_EVENTS,
            metadata={
                **_label_metadata(ctx, valid),
                "quarantined": len(all_q),
                "seconds": seconds,
            },
        )
        yield dg.Output(
            quarantined,
            output_name=names.QUARANTINED_EVENTS,
            metadata={"quarantined_by_reason": dg.MetadataValue.json(reasons)},
        )
        yield _quarantine_check(
            valid_key, check_name, shares, all_q, total, run.quarantine_max_share
        )

    sides = [_side_table_asset(ctx, table, group) for table in uc.spec.event_schema.side_tables]
    return [raw_events, validate_events, *sides]


def _side_table_asset(ctx: StageContext, table: str, group: str) -> dg.AssetsDefinition:
    """``<name>_<table>`` (valid rows) and ``<name>_quarantined_<table>`` of a side table,
    read day by day from the use case's source, with its quarantine check."""
    uc = ctx.use_case
    valid_key = ctx.key(table)
    quarantine_base = names.quarantined(table)
    check_name = ctx.name(names.side_quarantine_check(table))
    spec = uc.spec.event_schema.side_tables[table]
    max_share = ctx.run.quarantine_max_share

    @dg.multi_asset(
        name=ctx.name(names.validate_side(table)),
        group_name=group,
        partitions_def=ctx.partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        outs={
            table: dg.AssetOut(
                key=valid_key,
                owners=OWNERS,
                kinds={"pandera", "parquet"},
                metadata={**ctx.metadata(table), SIDE_TABLE_KEY: table},
                description=(
                    f"Side table {table} of the use case, one partition per day of its "
                    f"`{spec.time}`: the rows that pass its declaration (keys "
                    f"{', '.join(spec.keys)}, values {', '.join(spec.columns)}), in their "
                    "dtypes, a key and time once. The as-of features join it. Stored at "
                    f"<data_dir>/lake/{ctx.table(table)}/date=*/. Check {check_name}: fails "
                    f"when any day's quarantined share exceeds {uc.env_prefix}"
                    "QUARANTINE_MAX_SHARE."
                ),
            ),
            quarantine_base: dg.AssetOut(
                key=ctx.key(quarantine_base),
                owners=OWNERS,
                kinds={"pandera", "parquet"},
                metadata=ctx.metadata(quarantine_base),
                description=(
                    f"Rows of side table {table} that broke a rule, as the text received, "
                    "with `reason` and `partition_date`. Stored at "
                    f"<data_dir>/lake/{ctx.table(quarantine_base)}/date=*/."
                ),
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                check_name,
                asset=valid_key,
                description=f"Quarantined share of every day <= {uc.env_prefix}"
                "QUARANTINE_MAX_SHARE.",
            )
        ],
    )
    def validate_side_table(context: dg.AssetExecutionContext):
        t0 = time.perf_counter()
        valid, quarantined, shares = {}, {}, {}
        for key in context.partition_keys:
            raw = read_side_day(uc, table, date.fromisoformat(key), ctx.resolved)
            valid[key], quarantined[key] = validation.validate_side_rows(raw, key, table, uc)
            shares[key] = len(quarantined[key]) / len(raw) if len(raw) else 0.0
        all_q = pd.concat(quarantined.values(), ignore_index=True)
        total = sum(len(v) for v in valid.values()) + len(all_q)
        yield dg.Output(
            valid,
            output_name=table,
            metadata={"quarantined": len(all_q), "seconds": round(time.perf_counter() - t0, 3)},
        )
        yield dg.Output(
            quarantined,
            output_name=quarantine_base,
            metadata={
                "quarantined_by_reason": dg.MetadataValue.json(validation.reason_counts(all_q))
            },
        )
        yield _quarantine_check(valid_key, check_name, shares, all_q, total, max_share)

    return validate_side_table
