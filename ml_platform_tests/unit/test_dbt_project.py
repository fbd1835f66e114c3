"""The dbt project on its own: environment, manifest, and the models' SQL on a tiny lake.

The SQL test runs the real ``dbt build`` (a subprocess, as Dagster runs it) over a lake
written here, to pin the partition semantics the Dagster layer relies on: a run replaces
the days of its range whole (rows that vanished upstream vanish), a day with only
quarantined rows still gets its fact row, and a broken value fails a dbt test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from ml_platform import warehouse
from ml_platform.data import contract as c
from ml_platform.data import lake
from ml_platform.defs.warehouse import dbt_env as env_mod
from ml_platform.defs.warehouse.project import (
    DBT_PROJECT_DIR,
    prepare_dbt_manifest,
    warehouse_project,
)

D1, D2, D3 = date(2025, 4, 1), date(2025, 4, 2), date(2025, 4, 3)
MODELS = ("stg_transactions", "dim_customers", "dim_terminals", "fct_daily_transactions")


def test_dbt_env_comes_from_settings(settings_env):
    s = settings_env(profile="embedded")
    env = env_mod.dbt_env(s, D1, D2)
    assert env[env_mod.WAREHOUSE_PATH] == str(s.data_dir / "warehouse.duckdb")
    assert Path(env[env_mod.WAREHOUSE_PATH]).is_absolute()
    assert env[env_mod.LAKE_DIR] == str(s.lake_dir)
    assert env[env_mod.DBT_TARGET] == "dev"
    assert (env[env_mod.PARTITION_START], env[env_mod.PARTITION_END]) == (
        "2025-04-01",
        "2025-04-02",
    )
    assert env_mod.PARTITION_START not in env_mod.dbt_env(s)  # no range: every day


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [(D2, D1, "before start"), (D1, None, "both start and end")],
)
def test_dbt_env_rejects_bad_ranges(settings_env, start, end, message):
    with pytest.raises(ValueError, match=message):
        env_mod.dbt_env(settings_env(), start, end)


def test_dbt_environment_restores_the_process_env(settings_env, monkeypatch):
    monkeypatch.setenv(env_mod.PARTITION_START, "sentinel")
    s = settings_env()
    with env_mod.dbt_environment(s, D1, D3):
        assert os.environ[env_mod.PARTITION_END] == "2025-04-03"
    assert os.environ[env_mod.PARTITION_START] == "sentinel"
    assert env_mod.PARTITION_END not in os.environ


def test_manifest_has_models_tests_and_source_lineage():
    path = warehouse_project.manifest_path  # any environment's parse has the same graph
    manifest = json.loads((path if path.exists() else prepare_dbt_manifest()).read_text())
    models = {n["name"] for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert set(MODELS) <= models
    tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    kinds = {t["test_metadata"]["name"] for t in tests if t.get("test_metadata")}
    assert {"unique", "not_null", "accepted_values", "relationships"} <= kinds
    sources = {s["name"]: s for s in manifest["sources"].values()}
    for name in ("validated_transactions", "quarantined_transactions"):
        meta = sources[name]["meta"] or sources[name]["config"]["meta"]
        assert meta["dagster"]["asset_key"] == [name]
        assert "read_parquet(" in meta["external_location"]
    project_yml = (DBT_PROJECT_DIR / "dbt_project.yml").read_text()
    assert "send_anonymous_usage_stats: false" in project_yml


def _tx(ids: list[int], day: date, fraud: list[int] | None = None) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            c.TRANSACTION_ID: pd.Series(ids, dtype="int64"),
            c.TX_DATETIME: pd.Series(
                [pd.Timestamp(day) + pd.Timedelta(hours=1 + i) for i in range(n)],
                dtype="datetime64[ns]",
            ),
            c.CUSTOMER_ID: pd.Series([i % 2 for i in ids], dtype="int64"),
            c.TERMINAL_ID: pd.Series([10 + i % 3 for i in ids], dtype="int64"),
            c.TX_AMOUNT: pd.Series([10.0 * (i + 1) for i in ids], dtype="float64"),
            c.TX_FRAUD: pd.Series(fraud or [0] * n, dtype="int8"),
        }
    )


def _quarantine(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {col: ["x"] * n for col in c.RAW_COLUMNS} | {"reason": ["tx_amount: negative"] * n}
    )


def _dbt_build(
    s, tmp_path: Path, start: date, end: date, *select: str
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **env_mod.dbt_env(s, start, end),
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "target"),
    }
    args = ["build", *(["--select", *select] if select else [])]
    dbt = Path(sys.executable).with_name("dbt")
    return subprocess.run(
        [str(dbt), *args], cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True
    )


@pytest.mark.slow  # three real dbt subprocesses (~15 s on an idle machine)
def test_models_replace_their_range_and_count_quarantine(settings_env, tmp_path):
    s = settings_env()
    s.data_dir.mkdir(parents=True)
    write = lake.write_partition
    write(_tx([1, 2, 3], D1, fraud=[0, 1, 0]), s.lake_dir, "validated_transactions", D1)
    write(_tx([4, 5], D2), s.lake_dir, "validated_transactions", D2)
    write(_tx([], D3), s.lake_dir, "validated_transactions", D3)  # all of day 3 quarantined
    write(_quarantine(0), s.lake_dir, "quarantined_transactions", D1)
    write(_quarantine(1), s.lake_dir, "quarantined_transactions", D2)
    write(_quarantine(2), s.lake_dir, "quarantined_transactions", D3)

    first = _dbt_build(s, tmp_path, D1, D3)
    assert first.returncode == 0, first.stdout[-3000:]
    fct = warehouse.query(s.warehouse_path, "select * from fct_daily_transactions order by tx_date")
    assert fct["n_transactions"].tolist() == [3, 2, 0]
    assert fct["n_quarantined"].tolist() == [0, 1, 2]
    assert fct["n_fraud"].tolist() == [1, 0, 0]
    assert fct["fraud_rate"].tolist()[:2] == pytest.approx([1 / 3, 0.0])
    assert pd.isna(fct["fraud_rate"].iloc[2]) and pd.isna(fct["avg_amount"].iloc[2])
    assert fct["quarantined_share"].tolist() == pytest.approx([0.0, 1 / 3, 1.0])

    # upstream re-validation dropped transaction 5: re-running day 2 removes it, nothing else
    write(_tx([4], D2), s.lake_dir, "validated_transactions", D2)
    second = _dbt_build(s, tmp_path, D2, D2)
    assert second.returncode == 0, second.stdout[-3000:]
    stg = warehouse.query(s.warehouse_path, "select * from stg_transactions order by 1")
    assert stg["transaction_id"].tolist() == [1, 2, 3, 4]
    fct = warehouse.query(s.warehouse_path, "select * from fct_daily_transactions order by tx_date")
    assert fct["n_transactions"].tolist() == [3, 1, 0]
    dims = warehouse.row_counts(s.warehouse_path, ["dim_customers", "dim_terminals"])
    assert dims == {"dim_customers": 2, "dim_terminals": 3}

    # a label that is not 0/1 reaching the warehouse fails the accepted_values test
    write(_tx([6], D1, fraud=[2]), s.lake_dir, "validated_transactions", D1)
    third = _dbt_build(s, tmp_path, D1, D1, "stg_transactions")
    assert third.returncode != 0
    assert "accepted_values_stg_transactions_tx_fraud" in third.stdout
