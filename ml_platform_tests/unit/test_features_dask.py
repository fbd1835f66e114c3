"""Features on Dask equal the local engine's bit for bit (fraud and flights, small data).

The session's 2-worker process cluster (``dask_client``) runs the entity-sharded engine;
each frame is compared column by column on its float64 bits, event ids and dtypes.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.simulator import generate_days
from ml_platform.data.validation import validate_events, validate_side_rows
from ml_platform.features import build_features, build_features_for_days, feature_set
from ml_platform.features.sharded import bit_identical, plan
from ml_platform.use_cases.loader import PACKAGE_ROOT, engine_label_delay, load_use_case


def test_fraud_on_dask_is_bit_identical(dask_client) -> None:
    tx = generate_days(
        date(2025, 4, 1), date(2025, 5, 15), seed=11, n_customers=150, n_terminals=300
    )
    tx = tx.sample(frac=1.0, random_state=0).reset_index(drop=True)  # input order is kept
    local = build_features(tx, 7)
    assert bit_identical(local, build_features(tx, 7, client=dask_client))
    days = ["2025-05-01", "2025-05-02", "2025-05-09"]
    local_days = build_features_for_days(tx, days, 7)
    on_dask = build_features_for_days(tx, days, 7, client=dask_client)
    assert bit_identical(local_days, on_dask) and len(on_dask) > 500


def test_flights_on_dask_is_bit_identical(dask_client) -> None:
    """String keys, per-row label times and the weather as-of join, sharded by 4 entities."""
    uc = load_use_case(PACKAGE_ROOT / "flights")
    days = [date(2013, 3, 5) + timedelta(days=i) for i in range(5)]
    events = pd.concat(
        [validate_events(uc.hook("source.py:load_day")(d), d, uc)[0] for d in days],
        ignore_index=True,
    )
    weather = pd.concat(
        [
            validate_side_rows(uc.hook("source.py:load_weather_day")(d), d, "weather", uc)[0]
            for d in days
        ],
        ignore_index=True,
    )
    kwargs = {"use_case": uc, "side_tables": {"weather": weather}}
    delay = engine_label_delay(uc, 7)
    local = build_features(events, delay, **kwargs)
    assert bit_identical(local, build_features(events, delay, client=dask_client, **kwargs))
    assert len(plan(feature_set(uc))) == len({f.entity for f in feature_set(uc).features} - {None})


def test_bit_identical_sees_one_changed_bit() -> None:
    frame = pd.DataFrame({"id": [1, 2], "x": [0.0, 1.5]})
    assert bit_identical(frame, frame.copy())
    assert not bit_identical(frame, frame.assign(x=[-0.0, 1.5]))
    assert not bit_identical(frame, frame.assign(x=[0.0, np.nextafter(1.5, 2)]))
    assert not bit_identical(frame, frame.assign(id=[1, 3]))


def test_bad_input_is_refused_before_any_shuffle(dask_client) -> None:
    tx = generate_days(date(2025, 4, 1), date(2025, 4, 3), seed=1, n_customers=20, n_terminals=40)
    tx.loc[3, "transaction_id"] = tx.loc[2, "transaction_id"]
    with pytest.raises(ValueError, match="transaction_id: not unique"):
        build_features(tx, 7, client=dask_client)
    with pytest.raises(ValueError, match="rows: expected a boolean mask"):
        build_features(
            tx.drop_duplicates("transaction_id"), 7, rows=np.ones(2, bool), client=dask_client
        )
