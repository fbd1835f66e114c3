"""The online engine and both stores read every column and window from the use case.

A throw-away use case (string event ids and entity keys, windows in minutes and hours, a
one-day label delay; binary and regression labels) declared in ``tmp_path``: online features
replayed one event at a time, every label recorded at once, equal the batch engine's within
1e-9 on both stores; store keys carry the use case's name, so use cases never share state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.features import build_features, feature_set
from ml_platform.features.online import OnlineFeatureEngine, parse_event
from ml_platform.features.stores.base import EventRecord, OnlineStore, to_ns
from ml_platform.features.stores.redis import RedisStore
from ml_platform.features.stores.sqlite import SQLiteStore
from ml_platform.use_cases import UseCase
from ml_platform_tests.unit.test_features_generic import BASE, click_histories, clicks
from ml_platform_tests.unit.test_online_parity import REDIS_URL, require_redis

__all__ = ["clicks"]  # the use-case fixture, shared with the batch engine's test

DELAY = 1  # the clicks use case's label delay (days)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def click_store(request, clicks: UseCase, tmp_path_factory) -> Iterator[OnlineStore]:
    """A store of the clicks use case; the Redis one under a unique prefix, deleted after."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("online") / "clicks.sqlite"
        store: OnlineStore = SQLiteStore(path, label_delay_days=DELAY, use_case=clicks)
    else:
        require_redis()
        prefix = f"mlp-test-{uuid.uuid4().hex[:12]}:fs"
        store = RedisStore(REDIS_URL, prefix=prefix, label_delay_days=DELAY, use_case=clicks)
    yield store
    store.clear()
    store.close()


def _replay(engine: OnlineFeatureEngine, events: pd.DataFrame) -> pd.DataFrame:
    """Online features of every event in event order; each label is recorded at once. An
    event's features come from the state strictly before it: recording it changes nothing."""
    fs = engine.features
    out = {}
    for row in events.sort_values([fs.event_time, fs.event_id]).to_dict("records"):
        label = row.pop(fs.label)
        out[row[fs.event_id]] = engine.compute(row)
        engine.record(row)
        np.testing.assert_array_equal(engine.compute(row), out[row[fs.event_id]])
        engine.record_labels(pd.DataFrame([{**row, fs.label: label}]))
    return pd.DataFrame.from_dict(out, orient="index", columns=fs.columns)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_online_equals_batch_with_string_keys_and_minute_windows(
    click_store: OnlineStore, clicks: UseCase, data
) -> None:
    fs = feature_set(clicks)
    events = data.draw(click_histories(fs.label_task), label="events")
    click_store.clear()
    engine = OnlineFeatureEngine(click_store, label_delay_days=DELAY)
    batch = build_features(events, label_delay_days=DELAY, use_case=clicks)
    batch = batch.set_index(fs.event_id)

    # part bulk-loaded as of a cut-off before the last timestamp, the rest replayed
    order = events.sort_values([fs.event_time, fs.event_id]).reset_index(drop=True)
    times = order[fs.event_time]
    cuts = [0, *(k for k in range(1, len(order)) if times.iloc[k - 1] < times.iloc[-1])]
    k = data.draw(st.sampled_from(cuts), label="loaded rows")
    rest = order
    if k:
        as_of = times.iloc[k - 1]
        head = order[times <= as_of]
        click_store.load(head, as_of)
        engine.record_labels(head)  # labels that matured after the cut-off arrive later
        rest = order[times > as_of]
    online = _replay(engine, rest)
    assert len(online) == len(rest)
    np.testing.assert_allclose(
        online.to_numpy(float),
        batch.loc[online.index, fs.columns].to_numpy(float),
        rtol=1e-9,
        atol=1e-9,
    )


def _click(click_id: str, user: str = "ann", page: str = "/a") -> EventRecord:
    return EventRecord(click_id, to_ns(BASE), (user, page), (2.5,))


def test_redis_keys_carry_the_use_case_name(clicks: UseCase) -> None:
    """Two use cases under one prefix never see each other's state."""
    require_redis()
    prefix = f"mlp-test-{uuid.uuid4().hex[:12]}:fs"
    with (
        RedisStore(REDIS_URL, prefix=prefix, label_delay_days=DELAY, use_case=clicks) as mine,
        RedisStore(REDIS_URL, prefix=prefix, label_delay_days=DELAY) as fraud,
    ):
        try:
            mine.append(_click("c1"))
            keys = redis.Redis.from_url(REDIS_URL).keys(f"{prefix}:*")
            assert keys and all(k.decode().startswith(f"{prefix}:clicks:") for k in keys)
            assert fraud.watermark_ns() is None
            assert set(fraud.entity_counts().values()) == {0}
            assert mine.entity_counts() == {"user": 1, "page": 1}
            fraud.clear()
            assert mine.watermark_ns() == to_ns(BASE)
        finally:
            mine.clear()


def test_sqlite_file_belongs_to_one_use_case(clicks: UseCase, tmp_path) -> None:
    path = tmp_path / "online.sqlite"
    with SQLiteStore(path, label_delay_days=DELAY, use_case=clicks) as store:
        store.append(_click("c1"))
        assert store.entity_counts() == {"user": 1, "page": 1}
    with pytest.raises(
        ValueError, match="holds the online state of use case 'clicks', not 'fraud'"
    ):
        SQLiteStore(path, label_delay_days=DELAY)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"user": 7}, "user: must be a string, got 7"),
        ({"click_id": 3}, "click_id: must be a string"),
        ({"spend": float("inf")}, "spend: must be finite, got inf"),
        ({"page": None}, "page: missing"),
    ],
)
def test_request_fields_follow_the_declared_types(
    clicks: UseCase, patch: dict, message: str
) -> None:
    event = {"click_id": "c1", "at": BASE, "user": "ann", "page": "/a", "spend": 1.0}
    assert parse_event(event, clicks) == EventRecord("c1", to_ns(BASE), ("ann", "/a"), (1.0,))
    with pytest.raises(ValueError, match=message):
        parse_event({**event, **patch}, clicks)


def test_engine_refuses_a_store_of_another_use_case(click_store: OnlineStore) -> None:
    with pytest.raises(ValueError, match="use_case: engine 'fraud' != store 'clicks'"):
        OnlineFeatureEngine(click_store, label_delay_days=DELAY, use_case="fraud")
