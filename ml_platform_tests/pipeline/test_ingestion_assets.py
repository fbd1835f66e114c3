"""Ingestion assets materialized with Dagster on two days: lake output, checks, idempotency."""

from __future__ import annotations

import hashlib
from datetime import date

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from ml_platform.data import contract as c
from ml_platform.data import lake
from ml_platform.data.sources import export_days
from ml_platform.defs.resources import LakeIOManager
from ml_platform_tests.dagster_support import assets_of, fraud, names

D1, D2 = date(2025, 4, 8), date(2025, 4, 9)
ASSETS = (names.RAW_EVENTS, names.VALIDATED_EVENTS, names.QUARANTINED_EVENTS)
#: The lake keeps its table names (unprefixed)
TABLES = ("raw_transactions", "validated_transactions", "quarantined_transactions")
CHECK_NAME = "fraud_quarantine_share_within_limit"


def _materialize(settings) -> dg.ExecuteInProcessResult:
    """The ingestion assets built for ``settings`` (their source, dates and limits)."""
    _, defs = fraud(names.INGESTION, settings=settings)
    return dg.materialize(
        assets_of(defs),
        resources={"io_manager": LakeIOManager(lake_dir=str(settings.lake_dir))},
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: D1.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: D2.isoformat(),
        },
    )


def _digests(settings) -> dict[str, str]:
    return {
        f"{t}/{d}": hashlib.sha256(
            lake.partition_path(settings.lake_dir, t, d).read_bytes()
        ).hexdigest()
        for t in TABLES
        for d in (D1, D2)
    }


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == CHECK_NAME
    return evaluation


def test_definitions_metadata():
    ctx, defs = fraud(names.INGESTION)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {f"fraud_{base}" for base in ASSETS}
    assert [names.lake_table(base) for base in ASSETS] == list(TABLES)
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == "fraud_ingestion" and node.owners and node.description
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert node.metadata["ml_platform/use_case"] == "fraud"


@pytest.mark.slow
def test_two_days_simulated_then_idempotent(settings_env):
    s = settings_env()
    result = _materialize(s)
    assert result.success and _check(result).passed
    raw = lake.read_partitions(s.lake_dir, "raw_transactions", [D1, D2])
    valid = lake.read_partitions(s.lake_dir, "validated_transactions", [D1, D2])
    assert len(raw) > 500 and len(valid) == len(raw)
    assert set(valid[c.TX_DATETIME].dt.date) == {D1, D2}
    mats = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
    }
    assert mats["fraud_validated_events"]["dagster/row_count"].value == len(valid)
    assert mats["fraud_validated_events"]["quarantined"].value == 0
    assert 0 <= mats["fraud_raw_events"]["fraud_rate"].value < 0.2

    before = _digests(s)
    assert _materialize(s).success
    assert _digests(s) == before  # same bytes: re-materializing replaces, never appends


@pytest.mark.slow
def test_dirty_files_are_quarantined_and_fail_the_check(settings_env, tmp_path):
    sim = settings_env()
    export_days(sim, D1, D2, tmp_path / "in", fmt="csv")
    path = tmp_path / "in" / f"{D2}.csv"
    df = pd.read_csv(path)
    n = len(df)
    df[c.TX_AMOUNT] = df[c.TX_AMOUNT].astype(object)
    df.loc[:19, c.TX_AMOUNT] = "oops"
    df.loc[20, c.TX_FRAUD] = 3
    df.to_csv(path, index=False)

    s = settings_env(source="files", source_dir=tmp_path / "in", quarantine_max_share=0.01)
    result = _materialize(s)
    assert result.success  # a failed check does not fail the run; the check reports it
    check = _check(result)
    assert not check.passed
    assert check.metadata["worst_day"].value == D2.isoformat()
    assert check.metadata["quarantined_by_reason"].value == {
        "tx_amount: unparseable": 20,
        "tx_fraud: not 0/1": 1,
    }
    q = lake.read_partitions(s.lake_dir, "quarantined_transactions", [D2])
    valid = lake.read_partitions(s.lake_dir, "validated_transactions", [D2])
    assert len(q) == 21 and len(valid) == n - 21
    assert lake.read_partitions(s.lake_dir, "quarantined_transactions", [D1]).empty


@pytest.mark.slow
def test_missing_file_fails_the_partition_naming_it(settings_env, tmp_path):
    sim = settings_env()
    export_days(sim, D1, D1, tmp_path / "in")
    s = settings_env(source="files", source_dir=tmp_path / "in")
    with pytest.raises(FileNotFoundError, match="2025-04-09.parquet"):
        _materialize(s)
