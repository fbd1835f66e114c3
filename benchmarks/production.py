"""Production profile costs on this machine's real PostgreSQL and Redis; prints one JSON.

Measured (each against its embedded counterpart, same data):
- Dagster instance: the ingestion job (raw -> validated + quarantine) over ``--days`` days,
  run in-process on a SQLite DAGSTER_HOME and on a fresh PostgreSQL database (instance
  creation, i.e. table set-up, timed separately);
- online feature store: ``compute_and_record`` per transaction (the serving path's store
  work) on SQLite and on Redis, after loading the same history; p50/p99 in microseconds.
Temporary databases and Redis keys are removed at the end.

Usage: ``uv run python benchmarks/production.py [--days 7] [--customers 1000]
[--terminals 2000] [--requests 2000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
START = date(2025, 4, 1)


def _percentiles(values_s: list[float]) -> dict[str, float]:
    import numpy as np

    us = np.asarray(values_s) * 1e6
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
    }


def bench_instance(root: Path, days: int) -> dict:
    import dagster as dg

    from ml_platform.defs.ingestion.assets import raw_transactions, validate_transactions_assets
    from ml_platform.defs.resources import build_resources
    from ml_platform.defs.run import run_job
    from ml_platform.runtime import ensure_dagster_home
    from ml_platform.settings import get_settings

    def ingestion_defs() -> dg.Definitions:  # resources read the settings of each profile
        job = dg.define_asset_job("ingest", selection=dg.AssetSelection.groups("ingestion"))
        return dg.Definitions(
            assets=[raw_transactions, validate_transactions_assets],
            jobs=[job],
            resources=build_resources(),
            executor=dg.in_process_executor,
        )

    out = {}
    end = START + timedelta(days=days - 1)
    # warm-up (lazy imports, first simulation) on a throw-away instance: not timed
    os.environ["ML_PLATFORM_DATA_DIR"] = str(root / "warmup")
    get_settings.cache_clear()
    with dg.DagsterInstance.ephemeral() as instance:
        run_job(ingestion_defs(), "ingest", start=START, end=START, instance=instance)
    db = f"mlp_bench_{secrets.token_hex(4)}"
    try:
        for profile in ("embedded", "production"):
            os.environ.update(
                {
                    "ML_PLATFORM_PROFILE": profile,
                    "ML_PLATFORM_DATA_DIR": str(root / profile / "data"),
                    "ML_PLATFORM_PG_DAGSTER_DB": db,
                    "ML_PLATFORM_PG_MLFLOW_DB": db + "_mlflow",
                    "DAGSTER_HOME": str(root / profile / "home"),
                }
            )
            get_settings.cache_clear()
            t0 = time.perf_counter()
            home = ensure_dagster_home(get_settings())
            with dg.DagsterInstance.from_config(str(home)) as instance:
                t1 = time.perf_counter()
                result = run_job(
                    ingestion_defs(), "ingest", start=START, end=end, instance=instance
                )
                t2 = time.perf_counter()
                assert result.success
                n_events = len(instance.all_logs(result.run_id))
            out[profile] = {
                "instance_setup_s": round(t1 - t0, 2),
                "run_s": round(t2 - t1, 2),
                "events": n_events,
            }
    finally:
        _drop_databases(db, db + "_mlflow")
    return out


def _drop_databases(*names: str) -> None:
    import psycopg2

    from ml_platform.settings import get_settings

    s = get_settings()
    con = psycopg2.connect(
        host=s.pg_host,
        port=s.pg_port,
        user=s.pg_user,
        password=s.pg_password.get_secret_value(),
        dbname="postgres",
    )
    con.autocommit = True
    try:
        with con.cursor() as cur:
            for name in names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        con.close()


def bench_online_store(root: Path, customers: int, terminals: int, n: int) -> dict:
    import pandas as pd

    from ml_platform.data.simulator import generate_days
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.redis import RedisStore
    from ml_platform.features.stores.sqlite import SQLiteStore

    tx = generate_days(
        START, START + timedelta(days=44), seed=42, n_customers=customers, n_terminals=terminals
    ).sort_values(["tx_datetime", "transaction_id"])
    as_of = pd.Timestamp(datetime.combine(START + timedelta(days=40), datetime.min.time()))
    history = tx[tx["tx_datetime"] <= as_of]
    stream = tx[tx["tx_datetime"] > as_of].head(n).drop(columns="tx_fraud").to_dict("records")
    prefix = f"mlp_bench_{secrets.token_hex(4)}:fs"
    out = {"history_rows": len(history), "requests": len(stream)}
    stores = {
        "sqlite": SQLiteStore(root / "online.sqlite"),
        "redis": RedisStore("redis://127.0.0.1:6379/0", prefix=prefix),
    }
    try:
        for name, store in stores.items():
            t0 = time.perf_counter()
            store.load(history, as_of)
            load_s = time.perf_counter() - t0
            engine = OnlineFeatureEngine(store, 7)
            times = []
            for record in stream:
                t = time.perf_counter()
                engine.compute_and_record(record)
                times.append(time.perf_counter() - t)
            out[name] = {"load_s": round(load_s, 2), **_percentiles(times)}
    finally:
        stores["redis"].clear()
        for store in stores.values():
            store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--terminals", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    os.environ.update(
        {
            "DO_NOT_TRACK": "true",
            "DAGSTER_DISABLE_TELEMETRY": "true",
            "ML_PLATFORM_SIM_N_CUSTOMERS": str(args.customers),
            "ML_PLATFORM_SIM_N_TERMINALS": str(args.terminals),
        }
    )
    with tempfile.TemporaryDirectory(prefix="mlp-bench-prod-") as tmp:
        root = Path(tmp)
        result = {
            "benchmark": "production_profile",
            "load_average_1m": round(os.getloadavg()[0], 1),
            "dagster_ingestion": {"days": args.days, **bench_instance(root, args.days)},
            "online_store_compute_and_record": bench_online_store(
                root, args.customers, args.terminals, args.requests
            ),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
