"""The dbt project on its own: environment, manifest, and the models' SQL on a tiny lake.

The SQL test runs the real ``dbt build`` (a subprocess, as Dagster runs it) over a lake
written here, to pin the partition semantics the Dagster layer relies on: a run replaces
the days of its range whole (rows that vanished upstream vanish), a day with only
quarantined rows still gets its fact row, and a broken value fails a dbt test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml

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
    # a source names the Dagster asset it reads by its base name, and is its lake table
    from ml_platform.defs import names

    for base in (names.VALIDATED_EVENTS, names.QUARANTINED_EVENTS):
        name = names.lake_table(base)
        meta = sources[name]["meta"] or sources[name]["config"]["meta"]
        assert meta["dagster"]["asset_key"] == [base]
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


# --- the Dagster layer over dbt and the `ml-platform dbt` command, on one shared lake ------

FRAUD_VALUES_CHECK = "accepted_values_stg_transactions_tx_fraud"
GOOD = {D1: [1, 2, 3], D2: [4, 5]}


def _write_day(s, day: date, fraud: list[int] | None = None) -> None:
    lake.write_partition(_tx(GOOD[day], day, fraud), s.lake_dir, "validated_transactions", day)
    lake.write_partition(_quarantine(1), s.lake_dir, "quarantined_transactions", day)


@pytest.fixture(scope="module")
def lake_world(tmp_path_factory):
    """Settings on a private data folder holding two valid lake days, the manifest parsed
    for it, and a runner materializing the dbt assets for one day on a fresh instance."""
    from ml_platform.settings import get_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ML_PLATFORM_DATA_DIR", str(tmp_path_factory.mktemp("dbt") / "data"))
        get_settings.cache_clear()
        s = get_settings()
        for day in GOOD:
            _write_day(s, day)
        prepare_dbt_manifest()  # parsed for this warehouse path: each build skips its own
        import dagster as dg
        from dagster_dbt import DbtCliResource

        from ml_platform.defs.context import fraud_context
        from ml_platform.defs.warehouse.assets import build_warehouse_assets

        (warehouse_dbt,) = build_warehouse_assets(fraud_context(s))

        def materialize(day: date) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
            instance = dg.DagsterInstance.ephemeral()
            result = dg.materialize(
                [warehouse_dbt],
                partition_key=day.isoformat(),
                resources={"dbt": DbtCliResource(project_dir=warehouse_project)},
                instance=instance,
                raise_on_error=False,
            )
            return result, instance

        yield s, materialize
    get_settings.cache_clear()


def _run_targets(run_id: str) -> list[Path]:
    """The per-call target folders dagster-dbt made for one run."""
    return list((DBT_PROJECT_DIR / "target").glob(f"fraud_warehouse_dbt-{run_id[:7]}-*"))


@pytest.mark.slow
def test_dagster_run_passes_its_checks_and_removes_its_target_folder(lake_world):
    s, materialize = lake_world
    result, _ = materialize(D1)
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert any(e.check_name.startswith(FRAUD_VALUES_CHECK) for e in checks)
    assert all(e.passed for e in checks)
    assert not _run_targets(result.run_id)  # deleted after a successful run
    stg = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key.to_user_string() == "fraud_stg_transactions"
    )
    assert stg.metadata["range_rows"].value == len(GOOD[D1])
    assert stg.metadata["range"].value == f"{D1}..{D1}"


@pytest.mark.slow
def test_a_failing_dbt_test_fails_the_run_and_is_recorded(lake_world):
    import dagster as dg

    s, materialize = lake_world
    _write_day(s, D2, fraud=[0, 2])  # a label that is neither 0 nor 1
    try:
        result, instance = materialize(D2)
    finally:
        _write_day(s, D2)  # the shared lake is valid again for the other tests
    assert not result.success
    assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.FAILURE
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name.startswith(FRAUD_VALUES_CHECK) for e in failed] == [True]
    assert failed[0].asset_key == dg.AssetKey("fraud_stg_transactions")
    record = instance.get_latest_asset_check_evaluation_record(failed[0].asset_check_key)
    assert record is not None and record.run_id == result.run_id
    assert record.event.dagster_event.event_specific_data.passed is False
    kept = _run_targets(result.run_id)  # kept to debug the failure
    assert len(kept) == 1 and (kept[0] / "run_results.json").exists()
    shutil.rmtree(kept[0])


@pytest.fixture
def own_dbt_project(monkeypatch, tmp_path):
    """A copy of the dbt project that the manifest functions use for one test.

    Other test processes (pytest-xdist workers) parse the shared project for their own
    paths at any time, and touching one of its models would make their manifests stale:
    on a copy, what the test asserts about freshness is its own doing only.
    """
    from dagster_dbt import DbtProject

    from ml_platform.defs.warehouse import project

    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    own = DbtProject(project_dir=copy, profiles_dir=copy)
    monkeypatch.setattr(project, "DBT_PROJECT_DIR", copy)
    monkeypatch.setattr(project, "warehouse_project", own)
    monkeypatch.setattr(project, "_ENV_STAMP", own.manifest_path.with_name(project._ENV_STAMP.name))
    return own


@pytest.mark.slow
def test_touched_model_makes_the_manifest_stale_and_it_is_reparsed(
    own_dbt_project, settings_env, monkeypatch, tmp_path
):
    from ml_platform.defs.warehouse.project import manifest_is_stale
    from ml_platform.settings import get_settings

    settings_env()
    manifest = own_dbt_project.manifest_path
    assert manifest_is_stale()  # never parsed
    assert prepare_dbt_manifest() == manifest
    assert not manifest_is_stale()
    built = manifest.stat().st_mtime_ns
    prepare_dbt_manifest()  # fresh: no parse
    assert manifest.stat().st_mtime_ns == built

    with monkeypatch.context() as mp:  # another warehouse path: parsed for other paths
        mp.setenv("ML_PLATFORM_DATA_DIR", str(tmp_path / "elsewhere"))
        get_settings.cache_clear()
        assert manifest_is_stale()
    get_settings.cache_clear()
    assert not manifest_is_stale()

    model = own_dbt_project.project_dir / "macros" / "use_case_models.sql"
    os.utime(model)  # `touch`: now newer than the manifest
    assert manifest_is_stale()
    prepare_dbt_manifest()
    assert manifest.stat().st_mtime_ns > built
    assert not manifest_is_stale()


@pytest.mark.slow
def test_ml_platform_dbt_build_builds_the_warehouse_of_the_data_dir(lake_world, capfd):
    from ml_platform.cli import main

    s, _ = lake_world
    results = DBT_PROJECT_DIR / "target" / "manual" / "run_results.json"
    before = results.stat().st_mtime_ns if results.exists() else 0
    assert main(["dbt", "--", "build"]) == 0
    assert "Completed successfully" in capfd.readouterr().out
    assert results.stat().st_mtime_ns > before  # artifacts in target/manual
    stg = warehouse.query(s.warehouse_path, "select transaction_id from stg_transactions")
    assert sorted(stg["transaction_id"]) == sorted(GOOD[D1] + GOOD[D2])  # every lake day
    fct = warehouse.query(
        s.warehouse_path, "select n_quarantined from fct_daily_transactions order by tx_date"
    )
    assert fct["n_quarantined"].tolist() == [1, 1]


# --- the models generated from a use case's declaration ------------------------------------


def test_generated_models_follow_the_declaration_and_own_models_carry_the_name(tmp_path):
    """A team's use case gets its staging, outcomes and mart as macro calls with its own
    columns and names; its own dbt models are copied beside them, and one not named after
    the use case fails naming the file (the warehouse is shared)."""
    from ml_platform.defs.warehouse.generate import GENERATED_DIR, generate_models
    from ml_platform.use_cases import load_use_case
    from ml_platform.use_cases.loader import UseCaseError
    from ml_platform_tests.unit.test_use_cases import write_case

    folder = write_case(tmp_path / "team", "churn")
    (folder / "dbt").mkdir()
    (folder / "dbt" / "churn_daily.sql").write_text("select 1 as one\n")
    churn = load_use_case(folder)
    project = tmp_path / "project"
    written = generate_models([churn], settings_delay=7, project_dir=project)
    out = project / GENERATED_DIR / "churn"
    assert {p.relative_to(out).as_posix() for p in written} == {
        "_sources.yml",
        "_models.yml",
        "churn_stg_events.sql",
        "churn_fct_prediction_outcomes.sql",
        "churn_mart_model_performance_daily.sql",
        "own/churn_daily.sql",
    }
    staging = (out / "churn_stg_events.sql").read_text()
    assert '"churn_lake",\n    "churn_validated_events"' in staging
    assert '["customer_id", "bigint"]' in staging and '["tx_fraud", "integer"]' in staging
    outcomes = (out / "churn_fct_prediction_outcomes.sql").read_text()
    assert '"is_churn"' in outcomes and "delay_days=7" in outcomes  # its decision, its delay
    models = yaml.safe_load((out / "_models.yml").read_text())["models"]
    stg_columns = {c["name"]: c.get("data_tests", []) for c in models[0]["columns"]}
    assert stg_columns["transaction_id"][:2] == ["unique", "not_null"]
    assert {"value_between": {"arguments": {"min_value": 0}}} in stg_columns["tx_amount"]
    # unchanged declaration: nothing rewritten; a file it no longer generates: removed
    assert generate_models([churn], settings_delay=7, project_dir=project) == []
    (out / "churn_old_model.sql").write_text("select 1 as one\n")
    generate_models([churn], settings_delay=7, project_dir=project)
    assert not (out / "churn_old_model.sql").exists() and (out / "_models.yml").exists()
    # a use case this process does not load: its folder stays (another may be parsing it)
    generate_models([], settings_delay=7, project_dir=project)
    assert (out / "_models.yml").exists()

    (folder / "dbt" / "daily.sql").write_text("select 1 as one\n")
    with pytest.raises(UseCaseError, match=r"dbt/daily.sql: dbt model 'daily'.*'churn_'"):
        generate_models([load_use_case(folder)], settings_delay=7, project_dir=project)
