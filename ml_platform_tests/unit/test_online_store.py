"""The online store's watermark and pruning, on both stores (SQLite file, Redis prefix).

The watermark is the newest event time a store holds: ``load`` sets it, ``append`` only
moves it forward, and an append prunes its entities against it - never against the
timestamp of the transaction being written.
"""

from __future__ import annotations

import pandas as pd
import pytest

from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID
from ml_platform.features.stores.base import OnlineStore, TxRecord, ns_to_iso, to_ns
from ml_platform.features.stores.redis import RedisStore
from ml_platform.features.stores.sqlite import SQLiteStore
from ml_platform_tests.unit.test_online_parity import REDIS_URL, store_factory

__all__ = ["store_factory"]  # the fixture, shared with the parity proof

T0 = pd.Timestamp("2025-05-01 12:00:00")


def _history(rows: list[tuple[int, str, int, int]]) -> pd.DataFrame:
    """``(transaction_id, tx_datetime, customer_id, terminal_id)`` rows, no frauds."""
    return pd.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "tx_datetime": pd.to_datetime([r[1] for r in rows], format="ISO8601"),
            CUSTOMER_ID: [r[2] for r in rows],
            TERMINAL_ID: [r[3] for r in rows],
            "tx_amount": [10.0 + r[0] for r in rows],
            "tx_fraud": [0] * len(rows),
        }
    )


def _tx(tx_id: int, when: pd.Timestamp, customer: int, terminal: int) -> TxRecord:
    return TxRecord(tx_id, to_ns(when), customer, terminal, 5.0)


def _ids(store: OnlineStore, customer: int, terminal: int) -> tuple[list[int], list[int]]:
    """Every transaction id the store holds for the customer and the terminal."""
    lo, hi = to_ns("1970-01-01"), to_ns("2200-01-01")
    cust, term = store.fetch(customer, terminal, lo, lo, hi)
    return cust.ids.tolist(), term.ids.tolist()


def _reopen(store: OnlineStore) -> OnlineStore:
    if isinstance(store, SQLiteStore):
        return SQLiteStore(store.path, label_delay_days=store.label_delay_days)
    assert isinstance(store, RedisStore)
    return RedisStore(REDIS_URL, prefix=store.prefix, label_delay_days=store.label_delay_days)


def test_empty_store_has_no_watermark(store_factory) -> None:
    store = store_factory()
    assert store.watermark_ns() is None
    assert store.describe() == {
        "kind": "sqlite" if isinstance(store, SQLiteStore) else "redis",
        "watermark": None,
        "entities": {CUSTOMER_ID: 0, TERMINAL_ID: 0},
    }


def test_load_sets_watermark_to_newest_event_kept_and_it_persists(store_factory) -> None:
    store = store_factory()
    history = _history(
        [
            (1, "2025-04-30 08:00:00", 1, 10),
            (2, "2025-05-01 11:59:59.123456789", 2, 10),
            (3, "2025-05-01 12:00:01", 1, 11),  # after as_of: not loaded
        ]
    )
    stats = store.load(history, T0)
    newest = to_ns("2025-05-01 11:59:59.123456789")
    assert store.watermark_ns() == newest  # exact to the nanosecond
    assert stats[CUSTOMER_ID] == 2 and stats[TERMINAL_ID] == 1
    again = _reopen(store)
    try:
        assert again.watermark_ns() == newest
        assert again.describe()["watermark"] == "2025-05-01T11:59:59.123456789"
        assert again.describe()["entities"] == {CUSTOMER_ID: 2, TERMINAL_ID: 1}
    finally:
        again.close()
    # a reload with nothing in range empties the store, watermark included
    store.load(history, pd.Timestamp("2020-01-01"))
    assert store.watermark_ns() is None
    assert store.entity_counts() == {CUSTOMER_ID: 0, TERMINAL_ID: 0}


def test_append_only_moves_the_watermark_forward(store_factory) -> None:
    store = store_factory()
    store.load(_history([(1, "2025-05-01 10:00:00", 1, 10)]), T0)
    store.append(_tx(2, T0 + pd.Timedelta(seconds=30), 2, 20))
    assert store.watermark_ns() == to_ns(T0 + pd.Timedelta(seconds=30))
    store.append(_tx(3, T0 - pd.Timedelta(days=3), 3, 30))  # a late event
    assert store.watermark_ns() == to_ns(T0 + pd.Timedelta(seconds=30))
    assert _ids(store, 3, 30) == ([3], [3])  # recorded all the same
    store.clear()
    assert store.watermark_ns() is None
    store.append(_tx(4, T0, 4, 40))  # the first append of an empty store sets it
    assert store.watermark_ns() == to_ns(T0)


def test_pruning_follows_the_watermark_not_the_request(store_factory) -> None:
    store = store_factory(label_delay_days=1)
    horizon = pd.Timedelta(store.horizon_ns, "ns")
    old = T0 - horizon + pd.Timedelta(days=2)  # inside the horizon at load time
    recent = T0 - pd.Timedelta(days=1)
    store.load(_history([(1, str(old), 1, 10), (2, str(recent), 1, 10)]), T0)
    assert _ids(store, 1, 10) == ([1, 2], [1, 2])

    # another card's transaction moves the watermark 3 days on: customer 1 is untouched
    store.append(_tx(3, T0 + pd.Timedelta(days=3), 2, 20))
    assert _ids(store, 1, 10) == ([1, 2], [1, 2])
    # a late transaction of customer 1 / terminal 10 prunes against the watermark: entry 1
    # is older than watermark - horizon, although it is well within its own horizon
    store.append(_tx(4, T0, 1, 10))
    assert _ids(store, 1, 10) == ([2, 4], [2, 4])


def test_entries_within_the_horizon_survive_a_write(store_factory) -> None:
    store = store_factory(label_delay_days=1)
    edge = T0 - pd.Timedelta(store.horizon_ns, "ns")
    store.load(
        _history([(1, str(edge + pd.Timedelta(seconds=1)), 1, 10), (2, str(T0), 1, 10)]),
        T0,
    )
    store.append(_tx(3, T0, 1, 10))  # same time as the watermark
    assert _ids(store, 1, 10) == ([1, 2, 3], [1, 2, 3])
    store.append(_tx(4, T0 + pd.Timedelta(seconds=2), 1, 10))  # entry 1 now too old
    assert _ids(store, 1, 10) == ([2, 3, 4], [2, 3, 4])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (to_ns("2025-06-29 23:59:59"), "2025-06-29T23:59:59")],
)
def test_ns_to_iso(value: int | None, expected: str | None) -> None:
    assert ns_to_iso(value) == expected


def test_watermark_ns_is_exact_beyond_double_precision(store_factory) -> None:
    """ns timestamps exceed 2**53: two that a double cannot tell apart stay ordered."""
    store = store_factory()
    base = to_ns(T0)
    store.append(TxRecord(1, base + 1, 1, 10, 1.0))
    store.append(TxRecord(2, base, 2, 20, 1.0))  # one ns older: must not win
    assert float(base) == float(base + 1)
    assert store.watermark_ns() == base + 1
    store.append(TxRecord(3, base + 2, 3, 30, 1.0))
    assert store.watermark_ns() == base + 2
