"""Batch engine: exact semantics against a brute-force reference, point-in-time, bad input.

The reference below re-derives every feature from the definitions' wording with plain
per-row loops (O(n^2), tiny histories only); hypothesis builds histories whose timestamps
sit on whole days and seconds so ties, window edges and the label-delay edge all occur.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_platform.features import FEATURE_COLUMNS, build_features, feature_set
from ml_platform.features.definitions import DAY_NS
from ml_platform_tests.unit.test_features_generic import reference_features as generic_reference

BASE = pd.Timestamp("2025-04-05 00:00:00")  # a Saturday
AMOUNTS = [0.0, 0.01, 1.5, 19.99, 57.3, 220.01, 1234.56]


@st.composite
def histories(draw: st.DrawFn, max_rows: int = 45) -> pd.DataFrame:
    """Small transaction histories rich in ties, empty windows and exact window edges."""
    n = draw(st.integers(1, max_rows))
    days = draw(st.lists(st.integers(0, 75), min_size=n, max_size=n))
    # few distinct offsets inside a day: exact multiples of a day apart -> edges; 0/1 s -> ties
    secs = draw(
        st.lists(st.sampled_from([0, 1, 3600 * 6, 3600 * 7 - 1, 3600 * 7]), min_size=n, max_size=n)
    )
    ids = draw(st.permutations(range(1000, 1000 + n)))
    return pd.DataFrame(
        {
            "transaction_id": np.array(ids, dtype=np.int64),
            "tx_datetime": BASE
            + pd.to_timedelta(np.array(days) * DAY_NS + np.array(secs) * 10**9, unit="ns"),
            "customer_id": np.array(
                draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64
            ),
            "terminal_id": np.array(
                draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64
            ),
            "tx_amount": np.array(
                draw(st.lists(st.sampled_from(AMOUNTS), min_size=n, max_size=n)), dtype=np.float64
            ),
            "tx_fraud": np.array(
                draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int8
            ),
        }
    )


def reference_features(tx: pd.DataFrame, d: int) -> np.ndarray:
    """Every fraud feature of every row, straight from the definitions, one row at a time."""
    return generic_reference(tx, feature_set("fraud"), d)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx=histories(), d=st.sampled_from([1, 7]))
def test_batch_matches_reference(tx: pd.DataFrame, d: int) -> None:
    got = build_features(tx, label_delay_days=d)
    assert list(got.columns) == ["transaction_id", *FEATURE_COLUMNS]
    assert (got["transaction_id"].to_numpy() == tx["transaction_id"].to_numpy()).all()
    want = reference_features(tx, d)
    np.testing.assert_allclose(got[FEATURE_COLUMNS].to_numpy(float), want, rtol=1e-9, atol=1e-9)


def test_known_values_by_hand() -> None:
    """A hand-checked example: the delay edge and a tie at the same second."""
    t = pd.to_datetime(
        ["2025-04-01 05:00", "2025-04-08 05:00", "2025-04-08 05:00", "2025-04-09 06:59"]
    )
    tx = pd.DataFrame(
        {
            "transaction_id": [1, 3, 2, 4],
            "tx_datetime": t,
            "customer_id": [7, 7, 7, 8],
            "terminal_id": [5, 5, 5, 5],
            "tx_amount": [10.0, 20.0, 40.0, 5.0],
            "tx_fraud": np.array([1, 0, 0, 0], dtype=np.int8),
        }
    )
    f = build_features(tx, label_delay_days=7).set_index("transaction_id")
    # tie at 04-08 10:00: id 2 comes before id 3
    assert f.loc[2, "customer_id_nb_tx_1day_window"] == 1
    assert f.loc[3, "customer_id_nb_tx_1day_window"] == 2
    assert f.loc[3, "customer_id_avg_amount_1day_window"] == pytest.approx(30.0)
    assert f.loc[3, "customer_id_nb_tx_30day_window"] == 3
    # tx 1 is exactly 7 days before 2 and 3: its label is known (delay edge included)
    assert f.loc[2, "terminal_id_nb_tx_1day_window"] == 1
    assert f.loc[2, "terminal_id_risk_1day_window"] == 1.0
    # for tx 4 (04-09 05:00) the delayed 1-day window (04-01 05:00, 04-02 05:00] is empty
    assert f.loc[4, "terminal_id_nb_tx_1day_window"] == 0
    assert f.loc[4, "terminal_id_risk_1day_window"] == 0.0
    assert f.loc[4, "terminal_id_nb_tx_7day_window"] == 1
    assert f.loc[4, "tx_during_night"] == 1  # hour 6 <= 6
    assert f.loc[1, "tx_during_weekend"] == 0  # 2025-04-01 is a Tuesday
    assert f.loc[3, "customer_id_seconds_since_prev_tx"] == 0.0
    # tx 1's fraud is known from 04-08 05:00 on: counted, and exactly 7 days old for tx 2
    assert f.loc[2, "terminal_id_nb_fraud_1day_window"] == 1
    assert f.loc[2, "terminal_id_days_since_fraud"] == 7.0
    assert f.loc[4, "terminal_id_nb_fraud_1day_window"] == 0  # outside (t-8d, t-7d]
    assert f.loc[4, "terminal_id_nb_fraud_7day_window"] == 1
    assert f.loc[4, "terminal_id_days_since_fraud"] == pytest.approx(8 + 119 / 1440)
    assert f.loc[1, "terminal_id_days_since_fraud"] == 7 + 30  # no known fraud: d + w


@settings(max_examples=40, deadline=None)
@given(tx=histories(), data=st.data())
def test_point_in_time_future_rows_do_not_matter(tx: pd.DataFrame, data: st.DataObject) -> None:
    """Features of a row are the same whether or not anything after it (in event order) exists,
    and whatever the labels of transactions newer than t - d say."""
    order = tx.sort_values(["tx_datetime", "transaction_id"]).reset_index(drop=True)
    k = data.draw(st.integers(0, len(order) - 1), label="cutoff")
    full = build_features(order).set_index("transaction_id")
    past = build_features(order.iloc[: k + 1]).set_index("transaction_id")
    # Exact: window sums restart at every entity, so nothing else can move a single bit.
    np.testing.assert_array_equal(
        past[FEATURE_COLUMNS].to_numpy(float),
        full.loc[past.index, FEATURE_COLUMNS].to_numpy(float),
    )
    # flip every label newer than t_k - d, and change future amounts wildly
    t_k = order["tx_datetime"].iloc[k]
    fresh = order["tx_datetime"] > t_k - pd.Timedelta(days=7)
    tampered = order.copy()
    tampered.loc[fresh, "tx_fraud"] = 1 - tampered.loc[fresh, "tx_fraud"]
    tampered.loc[k + 1 :, "tx_amount"] = 99999.0
    again = build_features(tampered).set_index("transaction_id")
    row = order["transaction_id"].iloc[k]
    np.testing.assert_array_equal(
        again.loc[row, FEATURE_COLUMNS].to_numpy(float),
        full.loc[row, FEATURE_COLUMNS].to_numpy(float),
    )


@settings(max_examples=40, deadline=None)
@given(tx=histories(), data=st.data())
def test_rows_mask_returns_the_same_features(tx: pd.DataFrame, data: st.DataObject) -> None:
    """Asking for some rows only (batch scoring's month without its look-back) gives exactly
    those rows of the full computation, in the input order."""
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(tx), max_size=len(tx))))
    full = build_features(tx)
    some = build_features(tx, rows=mask)
    assert some["transaction_id"].tolist() == tx["transaction_id"][mask].tolist()
    np.testing.assert_array_equal(
        some[FEATURE_COLUMNS].to_numpy(float), full.loc[mask, FEATURE_COLUMNS].to_numpy(float)
    )


def _two_rows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "transaction_id": [1, 2],
            "tx_datetime": pd.to_datetime(["2025-04-01", "2025-04-02"]),
            "customer_id": [1, 1],
            "terminal_id": [1, 1],
            "tx_amount": [1.0, 2.0],
            "tx_fraud": np.array([0, 1], dtype=np.int8),
        }
    )


def test_rows_mask_must_match_the_transactions() -> None:
    tx = _two_rows()
    with pytest.raises(ValueError, match="rows: expected a boolean mask of 2 rows"):
        build_features(tx, rows=np.array([True]))


def test_labels_older_than_delay_do_matter() -> None:
    """The guard above is not vacuous: a matured label changes the terminal risk."""
    t = pd.to_datetime(["2025-04-01 12:00", "2025-04-09 12:00"])
    tx = pd.DataFrame(
        {
            "transaction_id": [1, 2],
            "tx_datetime": t,
            "customer_id": [1, 2],
            "terminal_id": [3, 3],
            "tx_amount": [1.0, 2.0],
            "tx_fraud": np.array([0, 0], dtype=np.int8),
        }
    )
    cols = [
        "terminal_id_risk_7day_window",
        "terminal_id_nb_fraud_7day_window",
        "terminal_id_days_since_fraud",
        "terminal_id_days_since_first_fraud",
        "terminal_id_fraud_share_since_first_fraud",
        "terminal_id_fraud_avg_amount_7day_window",
    ]
    before = build_features(tx).set_index("transaction_id").loc[2, cols].tolist()
    tx.loc[0, "tx_fraud"] = 1
    after = build_features(tx).set_index("transaction_id").loc[2, cols].tolist()
    assert before == [0.0, 0.0, 37.0, 37.0, 0.0, 0.0]
    assert after == [1.0, 1.0, 8.0, 8.0, 1.0, 1.0]


def test_timezone_aware_input_is_utc() -> None:
    tx = pd.DataFrame(
        {
            "transaction_id": [1],
            "tx_datetime": pd.to_datetime(["2025-04-05 01:30"]).tz_localize("Europe/Paris"),
            "customer_id": [1],
            "terminal_id": [1],
            "tx_amount": [3.0],
            "tx_fraud": np.array([0], dtype=np.int8),
        }
    )
    f = build_features(tx)
    # 01:30 Paris = 23:30 UTC on Friday 2025-04-04
    assert f["tx_during_weekend"].iloc[0] == 0 and f["tx_during_night"].iloc[0] == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns="terminal_id"), "terminal_id"),
        (lambda df: df.assign(tx_datetime="2025-04-01"), "tx_datetime"),
        (lambda df: df.assign(transaction_id=1), "transaction_id: not unique"),
        (lambda df: df.assign(tx_amount=np.inf), "tx_amount: must be finite"),
        (lambda df: df.assign(tx_fraud=2), "tx_fraud: must be 0 or 1"),
    ],
)
def test_bad_input_names_the_field(mutate, message: str) -> None:
    tx = _two_rows()
    with pytest.raises(ValueError, match=message):
        build_features(mutate(tx))


def test_label_delay_must_be_positive() -> None:
    tx = pd.DataFrame(columns=["transaction_id"])
    with pytest.raises(ValueError, match="label_delay_days"):
        build_features(tx, label_delay_days=0)


def test_empty_input() -> None:
    tx = pd.DataFrame(
        {
            "transaction_id": np.array([], dtype=np.int64),
            "tx_datetime": pd.to_datetime([]),
            "customer_id": np.array([], dtype=np.int64),
            "terminal_id": np.array([], dtype=np.int64),
            "tx_amount": np.array([], dtype=np.float64),
            "tx_fraud": np.array([], dtype=np.int8),
        }
    )
    assert build_features(tx).shape == (0, 1 + len(FEATURE_COLUMNS))
