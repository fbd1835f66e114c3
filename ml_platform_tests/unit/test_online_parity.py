"""Parity proof: the online engine equals the batch engine on both stores (SQLite, Redis).

Each generated history is replayed in event order: compute (before the transaction joins
the state), then record. Every fraud label is written to the store immediately, so the
online engine itself must ignore labels newer than t - d; the store is also bulk-loaded
half-way (as the ``online_feature_store`` asset does) to prove load + replay is seamless.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.features import FEATURE_COLUMNS, build_features
from ml_platform.features.online import OnlineFeatureEngine
from ml_platform.features.stores.base import OnlineStore
from ml_platform.features.stores.redis import RedisStore
from ml_platform.features.stores.sqlite import SQLiteStore
from ml_platform_tests.production.conftest import unavailable
from ml_platform_tests.unit.test_features_batch import histories

REDIS_URL = "redis://127.0.0.1:6379/0"


def require_redis(url: str = REDIS_URL) -> None:
    """Redis must answer: under ``CI=true`` an unreachable Redis fails the test, else skips."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {url}", exc)


def test_unreachable_redis_fails_under_ci(monkeypatch) -> None:
    from ml_platform_tests.service.support import free_port

    closed = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"Redis at {closed} unreachable"):
        require_redis(closed)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="unreachable"):
        require_redis(closed)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def store_factory(request, tmp_path_factory) -> Iterator:
    """Makes stores of one kind; Redis ones under a unique prefix, deleted afterwards."""
    made: list[OnlineStore] = []

    def make(label_delay_days: int = 7) -> OnlineStore:
        if request.param == "sqlite":
            path = tmp_path_factory.mktemp("online") / f"{uuid.uuid4().hex}.sqlite"
            s: OnlineStore = SQLiteStore(path, label_delay_days=label_delay_days)
        else:
            require_redis()
            prefix = f"mlp-test-{uuid.uuid4().hex[:12]}:fs"
            s = RedisStore(REDIS_URL, prefix=prefix, label_delay_days=label_delay_days)
        made.append(s)
        return s

    yield make
    for s in made:
        s.clear()
        s.close()


def replay(engine: OnlineFeatureEngine, tx: pd.DataFrame) -> pd.DataFrame:
    """Online features of every row of ``tx`` in event order; labels recorded at once."""
    out = {}
    for row in tx.sort_values(["tx_datetime", "transaction_id"]).to_dict("records"):
        fraud = row.pop("tx_fraud")
        out[row["transaction_id"]] = engine.compute(row)
        engine.record(row)
        if fraud == 1:
            engine.record_labels(pd.DataFrame([{**row, "tx_fraud": 1}]))
    return pd.DataFrame.from_dict(out, orient="index", columns=FEATURE_COLUMNS)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tx=histories(), d=st.sampled_from([1, 7]), data=st.data())
def test_online_equals_batch(store_factory, tx: pd.DataFrame, d: int, data) -> None:
    store = store_factory(d)
    store.clear()
    engine = OnlineFeatureEngine(store, label_delay_days=d)
    batch = build_features(tx, label_delay_days=d).set_index("transaction_id")

    # Part of the history bulk-loaded as of a cut-off (the asset's path), the rest replayed;
    # the cut-off is before the last timestamp, so every case replays rows and compares them.
    order = tx.sort_values(["tx_datetime", "transaction_id"]).reset_index(drop=True)
    times = order["tx_datetime"]
    cuts = [0, *(k for k in range(1, len(order)) if times.iloc[k - 1] < times.iloc[-1])]
    k = data.draw(st.sampled_from(cuts), label="loaded rows")
    if k:
        as_of = order["tx_datetime"].iloc[k - 1]
        head = order[order["tx_datetime"] <= as_of]
        store.load(head, as_of)
        # labels that matured after the cut-off arrive later through record_labels
        engine.record_labels(head)
        rest = order[order["tx_datetime"] > as_of]
    else:
        rest = order
    assert not rest.empty
    online = replay(engine, rest)
    assert len(online) == len(rest)
    np.testing.assert_allclose(
        online.to_numpy(float),
        batch.loc[online.index, FEATURE_COLUMNS].to_numpy(float),
        rtol=1e-9,
        atol=1e-9,
    )


def test_online_ignores_labels_newer_than_delay(store_factory) -> None:
    """A fraud label recorded right away is used only once t - d has passed it."""
    store = store_factory(7)
    engine = OnlineFeatureEngine(store, label_delay_days=7)
    col = FEATURE_COLUMNS.index("terminal_id_risk_7day_window")
    first = {
        "transaction_id": 1,
        "tx_datetime": "2025-04-01 12:00:00",
        "customer_id": 1,
        "terminal_id": 9,
        "tx_amount": 10.0,
    }
    engine.record(first)
    engine.record_labels(pd.DataFrame([{**first, "tx_fraud": 1}]))
    probe = {**first, "customer_id": 2, "transaction_id": 2}
    before_delay = engine.compute({**probe, "tx_datetime": "2025-04-08 11:59:59.999999999"})
    at_delay = engine.compute({**probe, "tx_datetime": "2025-04-08 12:00:00"})
    assert before_delay[col] == 0.0
    assert at_delay[col] == 1.0


def test_state_is_bounded_and_pruned(store_factory) -> None:
    """Entries older than the horizon disappear when the entity is written again."""
    store = store_factory(7)
    engine = OnlineFeatureEngine(store, label_delay_days=7)
    horizon = store.horizon_ns
    base = pd.Timestamp("2025-01-01")
    for i, t in enumerate([base, base + pd.Timedelta(horizon + 10**9, "ns")]):
        engine.record(
            {
                "transaction_id": i,
                "tx_datetime": t,
                "customer_id": 5,
                "terminal_id": 6,
                "tx_amount": 1.0,
            }
        )
    cust, term = store.fetch(5, 6, 0, 0, 2**62)
    assert list(cust.ids) == [1] and list(term.ids) == [1]
    if isinstance(store, RedisStore):
        ttl = store._r.ttl(store._key("customer_id", 5))
        assert 0 < ttl <= store.ttl_s


def test_record_is_idempotent(store_factory) -> None:
    store = store_factory(7)
    engine = OnlineFeatureEngine(store, label_delay_days=7)
    tx = {
        "transaction_id": 1,
        "tx_datetime": "2025-04-01",
        "customer_id": 1,
        "terminal_id": 1,
        "tx_amount": 3.0,
    }
    engine.record(tx)
    engine.record(tx)
    again = engine.compute(tx)  # a replayed request does not count itself twice
    assert again[FEATURE_COLUMNS.index("customer_id_nb_tx_1day_window")] == 1


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"customer_id": None}, "customer_id: missing"),
        ({"tx_amount": -1.0}, "tx_amount: must be finite and >= 0"),
        ({"tx_datetime": "not a date"}, "tx_datetime"),
        ({"terminal_id": 1.5}, "terminal_id: must be an integer"),
    ],
)
def test_bad_request_names_the_field(store_factory, patch: dict, message: str) -> None:
    engine = OnlineFeatureEngine(store_factory(7), label_delay_days=7)
    tx = {
        "transaction_id": 1,
        "tx_datetime": "2025-04-01",
        "customer_id": 1,
        "terminal_id": 1,
        "tx_amount": 3.0,
        **patch,
    }
    with pytest.raises(ValueError, match=message):
        engine.compute(tx)


def test_engine_and_store_delay_must_agree(tmp_path) -> None:
    with pytest.raises(ValueError, match="label_delay_days"):
        OnlineFeatureEngine(SQLiteStore(tmp_path / "s.sqlite", label_delay_days=7), 3)
