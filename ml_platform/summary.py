"""The short report that ends ``make demo``: rows per stage, quarantine, where things are.

Reads the lake with an in-memory DuckDB over the Parquet files and the warehouse through a
short read-only connection (never while dbt runs), so it is cheap and safe to call anytime.
"""

from __future__ import annotations

from typing import Any

from ml_platform import warehouse
from ml_platform.data import lake
from ml_platform.settings import Settings, get_settings

LAKE_TABLES = ("raw_transactions", "validated_transactions", "quarantined_transactions")
WAREHOUSE_TABLES = ("stg_transactions", "dim_customers", "dim_terminals", "fct_daily_transactions")
QUARANTINE_TABLE = "quarantined_transactions"
REASON_COLUMN = "reason"


def lake_tables(use_case: str | None = None) -> tuple[str, str, str]:
    """The raw, validated and quarantined lake tables of a use case (default: the flagship's,
    :data:`LAKE_TABLES`)."""
    from ml_platform.defs import names

    bases = (names.RAW_EVENTS, names.VALIDATED_EVENTS, names.QUARANTINED_EVENTS)
    raw, valid, quarantined = (names.lake_table(b, use_case) for b in bases)
    return raw, valid, quarantined


def collect_summary(
    settings: Settings | None = None, use_case: str | None = None
) -> dict[str, Any]:
    """The figures :func:`print_summary` prints, as a dict (also used by tests). The
    warehouse's are the flagship's dbt models (another use case's lake only)."""
    import duckdb

    from ml_platform.features.definitions import DEFAULT_USE_CASE

    s = settings or get_settings()
    flagship = use_case in (None, DEFAULT_USE_CASE)
    tables = lake_tables(use_case)
    quarantine_table = tables[2]
    out: dict[str, Any] = {"lake": {}, "warehouse": {}, "quarantine_reasons": {}, "daily": {}}
    con = duckdb.connect()
    try:
        for table in tables:
            days = lake.list_partitions(s.lake_dir, table)
            if not days:
                continue
            (rows,) = con.execute(
                "select count(*) from read_parquet(?)", [lake.table_glob(s.lake_dir, table)]
            ).fetchone()
            out["lake"][table] = {"rows": int(rows), "partitions": len(days)}
        if out["lake"].get(quarantine_table, {}).get("rows"):
            reasons = con.execute(
                f"select {REASON_COLUMN}, count(*) from read_parquet(?, union_by_name = true) "
                "group by 1 order by 2 desc, 1",
                [lake.table_glob(s.lake_dir, quarantine_table)],
            ).fetchall()
            out["quarantine_reasons"] = {str(r): int(n) for r, n in reasons}
    finally:
        con.close()

    if flagship and s.warehouse_path.exists():
        out["warehouse"] = warehouse.row_counts(s.warehouse_path, WAREHOUSE_TABLES)
        if "fct_daily_transactions" in out["warehouse"]:
            row = warehouse.query(
                s.warehouse_path,
                "select count(*) as days, min(tx_date) as first_day, max(tx_date) as last_day, "
                "sum(n_transactions) as transactions, sum(n_fraud) as fraud, "
                "sum(n_quarantined) as quarantined from fct_daily_transactions",
            ).iloc[0]
            out["daily"] = {
                "days": int(row["days"]),
                "first_day": str(row["first_day"])[:10],
                "last_day": str(row["last_day"])[:10],
                "transactions": int(row["transactions"] or 0),
                "fraud": int(row["fraud"] or 0),
                "quarantined": int(row["quarantined"] or 0),
            }
    return out


def print_summary(settings: Settings | None = None, use_case: str | None = None) -> None:
    """Print rows per stage, quarantined rows by reason, data locations and the UI command."""
    from ml_platform.features.definitions import DEFAULT_USE_CASE

    s = settings or get_settings()
    info = collect_summary(s, use_case)
    print("\nRows per stage" + ("" if use_case in (None, DEFAULT_USE_CASE) else f" ({use_case})"))
    for table in lake_tables(use_case):
        t = info["lake"].get(table)
        print(
            f"  lake  {table:<26} "
            + (f"{t['rows']:>10,} rows in {t['partitions']} days" if t else "(none)")
        )
    for table in WAREHOUSE_TABLES if use_case in (None, DEFAULT_USE_CASE) else ():
        n = info["warehouse"].get(table)
        print(f"  dbt   {table:<26} " + (f"{n:>10,} rows" if n is not None else "(not built)"))
    d = info["daily"]
    if d.get("transactions"):
        print(
            f"  fraud rate {d['fraud'] / d['transactions']:.2%} over {d['days']} days "
            f"({d['first_day']}..{d['last_day']})"
        )
    print("\nQuarantined rows by reason")
    if info["quarantine_reasons"]:
        for reason, n in info["quarantine_reasons"].items():
            print(f"  {reason:<36} {n:>8,}")
    else:
        print("  none")
    print("\nWhere the data is")
    print(f"  lake (Parquet, one folder per day)  {s.lake_dir}")
    print(f"  warehouse (DuckDB, written by dbt)  {s.warehouse_path}")
    print(f"  Dagster instance (runs, metadata)   {s.dagster_home}")
    print("\nOpen the UI: `make dev`, then http://127.0.0.1:3000 (asset graph, runs, checks)")
