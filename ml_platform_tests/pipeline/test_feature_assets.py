"""The feature assets materialized by Dagster over lake partitions of validated transactions.

A generated history is written as ``validated_transactions`` partitions; the assets must
write exactly the batch engine's features of their own days (computed from the look-back
partitions) and load the online store so that the online engine continues seamlessly.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.data import lake
from ml_platform.defs.partitions import build_daily_partitions
from ml_platform.defs.resources import ComputeResource, LakeIOManager, lake_table_of
from ml_platform.defs.run import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from ml_platform.features import FEATURE_COLUMNS, build_features, horizon_days
from ml_platform.features.online import OnlineFeatureEngine
from ml_platform.features.sharded import bit_identical
from ml_platform.features.stores import open_store
from ml_platform_tests.dagster_support import assets_of, fraud, names

START = date(2025, 4, 1)
N_DAYS = 45


def _history(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    t = pd.Timestamp(START) + pd.to_timedelta(rng.integers(0, N_DAYS * 86400, n), unit="s")
    return pd.DataFrame(
        {
            "transaction_id": rng.permutation(n).astype(np.int64),
            "tx_datetime": t.astype("datetime64[ns]"),
            "customer_id": rng.integers(0, 40, n).astype(np.int64),
            "terminal_id": rng.integers(0, 60, n).astype(np.int64),
            "tx_amount": rng.gamma(2.0, 30.0, n).round(2),
            "tx_fraud": (rng.random(n) < 0.1).astype(np.int8),
        }
    )


@pytest.fixture
def lake_with_history(settings_env, request):
    store_kind = getattr(request, "param", "sqlite")
    s = settings_env(online_store=store_kind, redis_prefix=f"mlp-test-{uuid.uuid4().hex[:10]}")
    tx = _history()
    day = tx["tx_datetime"].dt.date
    for i in range(N_DAYS):
        d = START + timedelta(days=i)
        lake.write_partition(
            tx[day == d].reset_index(drop=True), s.lake_dir, "validated_transactions", d
        )
    yield s, tx
    with open_store(s) as store:
        store.clear()


#: (table, partition keys) of every input the lake IO manager loaded, in order.
loaded_inputs: list[tuple[str, list[str]]] = []


class RecordingLakeIOManager(LakeIOManager):
    """The lake IO manager, noting which partitions each input load asks it for."""

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        up = context.upstream_output
        table = lake_table_of(up.definition_metadata, up.asset_key)
        loaded_inputs.append((table, list(context.asset_partition_keys)))
        return super().load_input(context)


def _materialize(
    s, first: str, last: str, compute: ComputeResource | None = None, store: bool = True
) -> dg.ExecuteInProcessResult:
    """The feature assets of ``s`` (the online store too if ``store``), over the validated
    events already in the lake; batch features on ``compute`` (default: local)."""
    loaded_inputs.clear()
    ctx, defs = fraud(names.FEATURES, settings=s)
    validated = dg.AssetSpec(
        ctx.key(names.VALIDATED_EVENTS),
        partitions_def=ctx.partitions,
        metadata=ctx.metadata(names.VALIDATED_EVENTS),
    )
    return dg.materialize(
        [validated, *assets_of(defs)],
        selection=[ctx.key(names.EVENT_FEATURES)] + [ctx.key(names.ONLINE_FEATURE_STORE)] * store,
        resources={
            "io_manager": RecordingLakeIOManager(lake_dir=str(s.lake_dir)),
            names.COMPUTE_RESOURCE: compute or ComputeResource(),
        },
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        instance=dg.DagsterInstance.ephemeral(),
    )


@pytest.mark.parametrize("lake_with_history", ["sqlite", "redis"], indirect=True)
def test_assets_write_batch_features_and_load_the_store(lake_with_history) -> None:
    s, tx = lake_with_history
    first, last = "2025-05-10", "2025-05-12"
    result = _materialize(s, first, last)
    assert result.success

    # 1. transaction_features: exactly its own days, equal to features over the full history
    got = lake.read_partitions(s.lake_dir, "transaction_features", [first, "2025-05-11", last])
    want = build_features(tx).set_index("transaction_id")
    days = tx["tx_datetime"].dt.strftime("%Y-%m-%d")
    assert sorted(got["transaction_id"]) == sorted(
        tx.loc[days.between(first, last), "transaction_id"]
    )
    np.testing.assert_allclose(
        got[FEATURE_COLUMNS].to_numpy(float),
        want.loc[got["transaction_id"], FEATURE_COLUMNS].to_numpy(float),
        rtol=1e-9,
        atol=1e-9,
    )
    assert list(got.columns[:4]) == ["transaction_id", "tx_datetime", "customer_id", "terminal_id"]

    # 2. online_feature_store: metadata, then online == batch for the next day's traffic
    mat = result.asset_materializations_for_node("fraud_online_feature_store")[-1]
    assert mat.metadata["rows"].value > 0 and mat.metadata["entities"].value > 0
    nxt = tx[days == "2025-05-13"].sort_values(["tx_datetime", "transaction_id"]).head(150)
    with open_store(s) as store:
        engine = OnlineFeatureEngine(store, s.label_delay_days)
        # labels that matured during the new day arrive as they mature; here: all at once,
        # the engine keeps to t - d by itself
        engine.record_labels(tx[days <= "2025-05-13"])
        online = []
        for row in nxt.drop(columns="tx_fraud").to_dict("records"):
            online.append(engine.compute(row))
            engine.record(row)
    np.testing.assert_allclose(
        np.vstack(online),
        want.loc[nxt["transaction_id"], FEATURE_COLUMNS].to_numpy(float),
        rtol=1e-9,
        atol=1e-9,
    )


def test_single_partition_reads_only_its_lookback(lake_with_history) -> None:
    s, tx = lake_with_history
    key = "2025-04-03"
    # every later partition is unreadable: reading one (through any path) fails the run
    for later in lake.list_partitions(s.lake_dir, "validated_transactions"):
        if later > key:
            lake.partition_path(s.lake_dir, "validated_transactions", later).write_bytes(b"x")
    result = _materialize(s, key, key)  # look-back reaches before the start
    assert result.success
    first = (date.fromisoformat(key) - timedelta(days=horizon_days(s.label_delay_days))).isoformat()
    partitions = build_daily_partitions(s)
    lookback = [k for k in partitions.get_partition_keys() if first <= k <= key]
    assert lookback == ["2025-04-01", "2025-04-02", key]  # clipped at the first partition
    # the store asked the IO manager for exactly the look-back partitions, nothing later;
    # the batch features read the same ones themselves (every later one is unreadable)
    assert loaded_inputs == [("validated_transactions", lookback)]
    mat = result.asset_materializations_for_node("fraud_event_features")[-1]
    in_lookback = tx["tx_datetime"].dt.strftime("%Y-%m-%d").between(lookback[0], key)
    assert mat.metadata["lookback_rows"].value == in_lookback.sum()
    got = lake.read_partitions(s.lake_dir, "transaction_features", ["2025-04-03"])
    want = build_features(tx).set_index("transaction_id")
    assert (got["tx_datetime"].dt.strftime("%Y-%m-%d") == "2025-04-03").all() and len(got)
    np.testing.assert_allclose(
        got[FEATURE_COLUMNS].to_numpy(float),
        want.loc[got["transaction_id"], FEATURE_COLUMNS].to_numpy(float),
        rtol=1e-9,
        atol=1e-9,
    )
    assert not lake.partition_path(s.lake_dir, "transaction_features", "2025-04-04").exists()


def test_batch_features_on_dask_write_the_same_partitions(lake_with_history, dask_client) -> None:
    """The compute resource on the session's cluster: the workers read the look-back, compute
    and write the partitions; every file equals the local run's, bit for bit."""
    s, _ = lake_with_history
    first, last = "2025-05-10", "2025-05-12"
    days = [first, "2025-05-11", last]
    assert _materialize(s, first, last, store=False).success
    local = [
        pd.read_parquet(lake.partition_path(s.lake_dir, "transaction_features", d)) for d in days
    ]
    on_dask = ComputeResource(compute="dask", dask_address=dask_client.scheduler.address)
    result = _materialize(s, first, last, compute=on_dask, store=False)
    assert result.success and loaded_inputs == []  # nothing went through this process
    mat = result.asset_materializations_for_node("fraud_event_features")[-1]
    assert mat.metadata["compute"].value == "dask"
    assert mat.metadata["dagster/row_count"].value == sum(len(f) for f in local) > 0
    for day, want in zip(days, local, strict=True):
        got = pd.read_parquet(lake.partition_path(s.lake_dir, "transaction_features", day))
        assert bit_identical(want, got), day
