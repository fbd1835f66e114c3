"""The production profile against the machine's real PostgreSQL and Redis.

- the Dagster instance on PostgreSQL: partitions materialized, run and event records read
  back through a fresh instance and straight from the database; the warehouse pool limit;
- MLflow tracking + registry on PostgreSQL: register, promote, roll back through the
  training registry API, the champion loaded back from the registry;
- the online store on Redis gives the same features and champion scores as SQLite.
Each test has its own databases / key prefix (see conftest.py) and cleans up.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import psycopg2
import pytest

from ml_platform_tests.production.conftest import PG
from ml_platform_tests.production.jobs import JOB, ingestion_defs

pytestmark = pytest.mark.production

DAYS = (date(2025, 4, 1), date(2025, 4, 2))


def _pg_count(db: str, sql: str, params: tuple = ()) -> int:
    con = psycopg2.connect(dbname=db, connect_timeout=3, **PG)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return int(cur.fetchone()[0])
    finally:
        con.close()


def test_dagster_instance_on_postgres_records_runs_and_materializations(
    production_settings, pg_databases
):
    import dagster as dg
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    from ml_platform.data import lake
    from ml_platform.defs.run import run_job
    from ml_platform.runtime import ensure_dagster_home

    s = production_settings()
    home = ensure_dagster_home(s)  # writes deploy/dagster.yaml, creates the databases
    assert pg_databases.exists(pg_databases.dagster) and pg_databases.exists(pg_databases.mlflow)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        result = run_job(ingestion_defs(), JOB, start=DAYS[0], end=DAYS[1], instance=instance)
        assert result.success

    # A fresh instance (new connections) reads everything back from PostgreSQL.
    with dg.DagsterInstance.from_config(str(home)) as again:
        (record,) = again.get_run_records()
        assert record.dagster_run.run_id == result.run_id
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        key = dg.AssetKey("fraud_validated_events")
        assert again.get_materialized_partitions(key) == {d.isoformat() for d in DAYS}
        mats = again.fetch_materializations(key, limit=10).records
        assert sorted(m.partition_key for m in mats) == [d.isoformat() for d in DAYS]
        table = "validated_transactions"  # the lake keeps its table names
        rows = sum(len(lake.read_partitions(s.lake_dir, table, [d])) for d in DAYS)
        assert mats[0].asset_materialization.metadata["dagster/row_count"].value == rows > 0
        events = again.all_logs(result.run_id)
        types = {e.dagster_event.event_type for e in events if e.dagster_event}
        assert {dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.ASSET_MATERIALIZATION} <= types
        check = again.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, "fraud_quarantine_share_within_limit")]
        )
        assert check, "the asset check result is stored on PostgreSQL too"

    # ...and it really is PostgreSQL: the rows are in this test's database, no SQLite files.
    assert (
        _pg_count(
            pg_databases.dagster, "SELECT count(*) FROM runs WHERE run_id = %s", (result.run_id,)
        )
        == 1
    )
    assert (
        _pg_count(
            pg_databases.dagster,
            "SELECT count(*) FROM event_logs WHERE run_id = %s",
            (result.run_id,),
        )
        > 10
    )
    assert not list(home.rglob("*.db"))


def test_warehouse_pool_admits_one_run_at_a_time_on_postgres(production_settings):
    """deploy/dagster.yaml's pool default (1) holds across processes: one dbt writer."""
    import dagster as dg

    from ml_platform.runtime import ensure_dagster_home

    home = ensure_dagster_home(production_settings())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert storage.supports_global_concurrency_limits
        storage.initialize_concurrency_limit_to_default("warehouse")
        assert storage.get_concurrency_info("warehouse").slot_count == 1
        first = storage.claim_concurrency_slot("warehouse", "run-a", "fraud_warehouse_dbt")
        second = storage.claim_concurrency_slot("warehouse", "run-b", "fraud_warehouse_dbt")
        assert first.is_claimed and not second.is_claimed
        storage.free_concurrency_slots_for_run("run-a")
        again = storage.claim_concurrency_slot("warehouse", "run-b", "fraud_warehouse_dbt")
        assert again.is_claimed


def test_mlflow_registry_on_postgres_register_promote_rollback(
    production_settings, pg_databases, platform
):
    from ml_platform.runtime import ensure_production_databases
    from ml_platform.training import registry
    from ml_platform_tests.service.support import register

    s = production_settings(data_dir=platform.data_dir)
    assert s.tracking_uri == s.postgres_url(pg_databases.mlflow)
    assert ensure_production_databases(s) == [pg_databases.dagster, pg_databases.mlflow]

    v1 = register(platform, platform.champion, promote=True)
    v2 = register(platform, platform.challenger, promote=False)
    assert registry.current_version("champion", model_name=s.model_name) == v1
    assert registry.current_version("challenger", model_name=s.model_name) == v2

    registry.promote(v2, who="tests", why="production profile test", model_name=s.model_name)
    assert registry.current_version("champion", model_name=s.model_name) == v2
    registry.rollback(who="tests", why="production profile test", model_name=s.model_name)
    assert registry.current_version("champion", model_name=s.model_name) == v1

    # the champion comes back from the registry and scores like the model we trained
    model, info = registry.load_native_model("champion", model_name=s.model_name)
    assert info.version == v1
    x = platform.valid[model.feature_columns].head(200)
    np.testing.assert_allclose(model.score(x), platform.champion.chosen.score(x), rtol=1e-12)
    history = registry.alias_history(model_name=s.model_name)
    assert [h["alias"] for h in history].count("champion") >= 3

    # stored in this test's PostgreSQL database, lineage tags included
    db = pg_databases.mlflow
    assert (
        _pg_count(db, "SELECT count(*) FROM model_versions WHERE name = %s", (s.model_name,)) == 2
    )
    assert (
        _pg_count(
            db,
            "SELECT count(*) FROM model_version_tags WHERE key = 'dataset_digest' AND name = %s",
            (s.model_name,),
        )
        == 2
    )
    assert (
        _pg_count(
            db,
            "SELECT count(*) FROM registered_model_aliases WHERE alias = "
            "'champion' AND version = %s",
            (int(v1),),
        )
        == 1
    )


def test_redis_online_store_matches_sqlite_through_the_champion(
    production_settings, redis_prefix, platform
):
    """Same history, same stream of requests: identical features and champion scores."""
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.base import open_store
    from ml_platform.features.stores.redis import RedisStore
    from ml_platform.features.stores.sqlite import SQLiteStore
    from ml_platform.settings import Settings

    prod = production_settings(data_dir=platform.data_dir)
    embedded = Settings(data_dir=platform.data_dir / "embedded", profile="embedded")
    assert (prod.online_store, embedded.online_store) == ("redis", "sqlite")
    tx = platform.transactions.sort_values(["tx_datetime", "transaction_id"])
    as_of = pd.Timestamp(datetime(2025, 5, 8, 23, 59, 59))
    history, stream = tx[tx["tx_datetime"] <= as_of], tx[tx["tx_datetime"] > as_of].head(400)
    model = platform.champion.chosen
    results = {}
    for s in (prod, embedded):
        with open_store(s) as store:
            loaded = store.load(history, as_of)
            assert loaded["rows"] > 0
            engine = OnlineFeatureEngine(store, s.label_delay_days)
            feats = np.vstack(
                [
                    engine.compute_and_record(r)
                    for r in stream.drop(columns="tx_fraud").to_dict("records")
                ]
            )
            results[type(store)] = (feats, model.score(feats))
    (f_redis, p_redis), (f_sqlite, p_sqlite) = results[RedisStore], results[SQLiteStore]
    np.testing.assert_array_equal(f_redis, f_sqlite)
    np.testing.assert_array_equal(p_redis, p_sqlite)
    assert (p_redis >= platform.champion.threshold).any(), "some frauds in the stream"

    import redis

    keys = redis.Redis.from_url(prod.redis_url).keys(f"{redis_prefix}:*")
    assert keys, "the production store wrote under this test's prefix"


def test_unreachable_service_fails_under_ci_and_skips_elsewhere(monkeypatch):
    from ml_platform_tests.production.conftest import unavailable

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL unreachable"):
        unavailable("PostgreSQL", OSError("connection refused"))
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="Redis unreachable"):
        unavailable("Redis", OSError("connection refused"))
