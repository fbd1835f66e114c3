"""The spine end to end: the real Definitions (dbt included) materialized in-process.

raw -> validated (+ quarantine) -> dbt staging, dims and daily facts on three simulated
days, in a private data folder. The warehouse must hold exactly what the lake holds, every
dbt test must pass as a Dagster asset check, and re-running one day must change nothing.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pytest

from ml_platform import warehouse
from ml_platform.data import lake

pytestmark = pytest.mark.slow

START, END = date(2025, 4, 1), date(2025, 4, 3)
DAYS = [START + timedelta(days=i) for i in range((END - START).days + 1)]
DBT_MODELS = ("stg_transactions", "dim_customers", "dim_terminals", "fct_daily_transactions")
LAKE_TABLES = ("raw_transactions", "validated_transactions", "quarantined_transactions")
#: The Dagster assets stored in those lake tables, and the dbt models' assets
INGESTION_ASSETS = ("fraud_raw_events", "fraud_validated_events", "fraud_quarantined_events")
DBT_ASSETS = tuple(f"fraud_{model}" for model in DBT_MODELS)


def _lake(s, table: str) -> pd.DataFrame:
    return lake.read_partitions(s.lake_dir, table, DAYS)


def _warehouse_tables(s) -> dict[str, pd.DataFrame]:
    order = {
        "stg_transactions": "transaction_id",
        "dim_customers": "customer_id",
        "dim_terminals": "terminal_id",
        "fct_daily_transactions": "tx_date",
    }
    return {
        t: warehouse.query(s.warehouse_path, f"select * from {t} order by {k}")
        for t, k in order.items()
    }


def _lake_bytes(s) -> dict[str, bytes]:
    return {
        f"{t}/{d}": lake.partition_path(s.lake_dir, t, d).read_bytes()
        for t in LAKE_TABLES
        for d in DAYS
    }


@pytest.fixture(scope="module")
def spine(tmp_path_factory):
    """Settings in a private data folder, the definitions built for them, and a runner."""
    from ml_platform.settings import get_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_PLATFORM_DATA_DIR", str(tmp_path_factory.mktemp("spine") / "data"))
        get_settings.cache_clear()
        s = get_settings()
        from ml_platform.defs import build_definitions
        from ml_platform.defs.run import run_job
        from ml_platform.defs.warehouse.project import prepare_dbt_manifest

        prepare_dbt_manifest()  # re-parses once for this warehouse path: fast builds after
        defs = build_definitions(["fraud"])  # resources (lake IO manager) point at this data folder

        def run(start: date, end: date) -> dg.ExecuteInProcessResult:
            instance = dg.DagsterInstance.ephemeral()
            return run_job(defs, "fraud_spine_job", start=start, end=end, instance=instance)

        yield s, defs, run
    get_settings.cache_clear()


def test_spine_job_covers_ingestion_and_warehouse(spine):
    _, defs, _ = spine
    job = defs.resolve_job_def("fraud_spine_job")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert set(INGESTION_ASSETS) | set(DBT_ASSETS) <= keys
    graph = defs.resolve_asset_graph()
    for model in DBT_ASSETS:
        node = graph.get(dg.AssetKey(model))
        assert node.group_name == "fraud_warehouse"
        assert node.partitions_def is not None
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    # dbt sources join the Dagster lineage instead of becoming separate external assets
    assert (
        dg.AssetKey("fraud_validated_events")
        in graph.get(dg.AssetKey("fraud_stg_transactions")).parent_keys
    )
    assert (
        dg.AssetKey("fraud_quarantined_events")
        in graph.get(dg.AssetKey("fraud_fct_daily_transactions")).parent_keys
    )


def test_three_days_then_rerun_one_is_identical(spine, capsys):
    s, _, run = spine
    result = run(START, END)
    assert result.success

    # every asset materialized for every day, in one run
    materialized = {
        (m.asset_key.to_user_string(), m.partition)
        for m in (e.materialization for e in result.get_asset_materialization_events())
    }
    for asset in (*INGESTION_ASSETS, *DBT_ASSETS):
        assert {(asset, d.isoformat()) for d in DAYS} <= materialized, asset

    # dbt tests ran as Dagster asset checks, all four kinds, all passed
    evaluations = result.get_asset_check_evaluations()
    dbt_checks = {e.check_name for e in evaluations if e.asset_key.to_user_string() in DBT_ASSETS}
    for kind in ("unique_", "not_null_", "accepted_values_", "relationships_"):
        assert any(name.startswith(kind) for name in dbt_checks), kind
    failed = [e.check_name for e in evaluations if not e.passed]
    assert not failed, failed

    # the warehouse holds exactly what the lake holds
    validated = _lake(s, "validated_transactions")
    quarantined = _lake(s, "quarantined_transactions")
    tables = _warehouse_tables(s)
    stg, fct = tables["stg_transactions"], tables["fct_daily_transactions"]
    assert len(validated) > 500
    assert stg["transaction_id"].tolist() == sorted(validated["transaction_id"].tolist())
    merged = validated.merge(stg, on="transaction_id", suffixes=("", "_wh"))
    for col in ("customer_id", "terminal_id", "tx_amount", "tx_fraud"):
        assert (merged[col] == merged[f"{col}_wh"]).all(), col
    assert (merged["tx_datetime"] == merged["tx_datetime_wh"]).all()

    lake_daily = validated.assign(day=validated["tx_datetime"].dt.date).groupby("day")
    assert [d.date() for d in pd.to_datetime(fct["tx_date"])] == DAYS
    assert fct["n_transactions"].tolist() == lake_daily.size().tolist()
    assert fct["n_fraud"].tolist() == lake_daily["tx_fraud"].sum().astype(int).tolist()
    assert fct["total_amount"].to_numpy() == pytest.approx(lake_daily["tx_amount"].sum().to_numpy())
    assert fct["fraud_rate"].to_numpy() == pytest.approx(
        (lake_daily["tx_fraud"].sum() / lake_daily.size()).to_numpy()
    )
    per_day_q = [
        len(lake.read_partitions(s.lake_dir, "quarantined_transactions", [d])) for d in DAYS
    ]
    assert fct["n_quarantined"].tolist() == per_day_q
    assert sum(per_day_q) == len(quarantined)
    assert len(tables["dim_customers"]) == validated["customer_id"].nunique()
    assert len(tables["dim_terminals"]) == validated["terminal_id"].nunique()
    assert tables["dim_customers"]["n_transactions"].sum() == len(validated)

    # row counts reach Dagster as metadata
    stg_event = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == dg.AssetKey("fraud_stg_transactions")
    )
    assert stg_event.metadata["dagster/row_count"].value == len(validated)

    # re-materializing the middle day replaces it: same lake files, same warehouse, no dupes
    lake_before = _lake_bytes(s)
    rerun = run(DAYS[1], DAYS[1])
    assert rerun.success
    assert {
        m.partition for m in (e.materialization for e in rerun.get_asset_materialization_events())
    } == {DAYS[1].isoformat()}
    assert _lake_bytes(s) == lake_before
    after = _warehouse_tables(s)
    for table, frame in tables.items():
        pd.testing.assert_frame_equal(after[table], frame, obj=table)
    assert after["stg_transactions"]["transaction_id"].is_unique

    # the demo summary reports the same figures
    from ml_platform.summary import collect_summary, print_summary

    summary = collect_summary(s)
    assert summary["lake"]["validated_transactions"] == {"rows": len(validated), "partitions": 3}
    assert summary["warehouse"]["stg_transactions"] == len(validated)
    assert sum(summary["quarantine_reasons"].values()) == len(quarantined)
    assert summary["daily"]["transactions"] == len(validated)
    print_summary(s)
    out = capsys.readouterr().out
    assert str(s.warehouse_path) in out and "make dev" in out
