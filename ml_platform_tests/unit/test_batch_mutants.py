"""Batch engine input checks: every refusal names the column and the reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.features import build_features
from ml_platform.use_cases.loader import UseCase
from ml_platform_tests.unit.test_features_batch import _two_rows as _tx


@pytest.mark.parametrize(
    "col", ["transaction_id", "customer_id", "terminal_id", "tx_amount", "tx_fraud"]
)
def test_a_null_in_any_input_column_is_refused_by_name(col: str) -> None:
    tx = _tx().astype({col: "float64"})
    tx.loc[1, col] = np.nan
    with pytest.raises(ValueError) as err:
        build_features(tx)
    assert str(err.value) == f"{col}: contains nulls"


def test_a_null_timestamp_is_refused() -> None:
    tx = _tx()
    tx.loc[1, "tx_datetime"] = pd.NaT
    with pytest.raises(ValueError) as err:
        build_features(tx)
    assert str(err.value) == "tx_datetime: contains nulls"


def test_missing_and_mistyped_columns_are_listed() -> None:
    with pytest.raises(ValueError) as err:
        build_features(_tx().drop(columns=["terminal_id", "tx_fraud"]))
    assert str(err.value) == "fraud events: missing column(s) ['terminal_id', 'tx_fraud']"
    with pytest.raises(ValueError) as err:
        build_features(_tx().assign(tx_datetime="2025-04-01"))
    assert str(err.value) == "tx_datetime: must be a datetime column, got object"


def test_fraud_labels_must_be_binary_and_amounts_finite() -> None:
    for bad, message in [
        (dict(tx_fraud=np.array([0, -1], dtype=np.int8)), "tx_fraud: must be 0 or 1"),
        (dict(tx_amount=[1.0, -np.inf]), "tx_amount: must be finite"),
    ]:
        with pytest.raises(ValueError) as err:
            build_features(_tx().assign(**bad))
        assert str(err.value) == message
    assert build_features(_tx().assign(tx_fraud=np.array([1, 1], dtype=np.int8))).shape[0] == 2


def test_features_for_days_keep_the_keys_and_use_all_history() -> None:
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.features.batch import build_features_for_days

    tx = pd.DataFrame(
        {
            "transaction_id": [10, 11, 12, 13],
            "tx_datetime": pd.to_datetime(
                ["2025-04-01 10:00", "2025-04-02 09:00", "2025-04-02 23:59", "2025-04-03 00:00"]
            ),
            "customer_id": [1, 1, 2, 1],
            "terminal_id": [5, 6, 5, 6],
            "tx_amount": [10.0, 30.0, 7.0, 1.0],
            "tx_fraud": np.array([0, 0, 0, 0], dtype=np.int8),
        }
    )
    out = build_features_for_days(tx, ["2025-04-02"], label_delay_days=1)
    assert list(out.columns) == [
        "transaction_id",
        "tx_datetime",
        "customer_id",
        "terminal_id",
        *FEATURE_COLUMNS,
    ]
    assert out["transaction_id"].tolist() == [11, 12]
    assert out["tx_datetime"].tolist() == list(tx["tx_datetime"].iloc[1:3])
    assert out["customer_id"].tolist() == [1, 2] and out["terminal_id"].tolist() == [6, 5]
    # the day before is history: customer 1's 7-day window holds both of its transactions
    assert out["customer_id_nb_tx_7day_window"].tolist() == [2.0, 1.0]
    assert out["customer_id_avg_amount_7day_window"].tolist() == [20.0, 7.0]
    full = build_features(tx, label_delay_days=1).set_index("transaction_id")
    pd.testing.assert_frame_equal(
        out.set_index("transaction_id")[FEATURE_COLUMNS], full.loc[[11, 12], FEATURE_COLUMNS]
    )


def test_calendar_flags_and_gaps_at_the_last_nanosecond() -> None:
    times = [  # 2025-04-04 is a Friday
        "2025-04-04 23:59:59.999999999",
        "2025-04-05 00:00:00",
        "2025-04-06 23:59:59.999999999",
        "2025-04-07 00:00:00",
        "2025-04-07 06:59:59.999999999",
        "2025-04-07 07:00:00",
    ]
    n = len(times)
    tx = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "tx_datetime": pd.to_datetime(times, format="ISO8601"),
            "customer_id": np.arange(n),
            "terminal_id": np.zeros(n, dtype=np.int64),
            "tx_amount": np.ones(n),
            "tx_fraud": np.zeros(n, dtype=np.int8),
        }
    )
    f = build_features(tx)
    assert f["tx_during_weekend"].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert f["tx_during_night"].tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    again = tx.assign(customer_id=0)  # one customer: gaps between consecutive transactions
    gaps = build_features(again)["customer_id_seconds_since_prev_tx"].tolist()
    assert gaps[4:] == [6 * 3600 + 59 * 60 + 59.999999999, 1e-9]


def test_positions_switch_to_int64_at_two_to_the_31_minus_one_rows() -> None:
    from ml_platform.features.batch import _index_dtype

    assert _index_dtype(0) is np.int32
    assert _index_dtype(2**31 - 2) is np.int32
    assert _index_dtype(2**31 - 1) is np.int64


@pytest.mark.skipif(
    np.finfo(np.longdouble).nmant < 63, reason="needs 80-bit extended precision (x86)"
)
def test_a_huge_earlier_amount_does_not_blur_later_window_means() -> None:
    # the running sums restart per entity in extended precision: a 1e9 amount ten days
    # earlier must not cost the 1-day mean of two cent amounts its last digits
    tx = pd.DataFrame(
        {
            "transaction_id": [1, 2, 3],
            "tx_datetime": pd.to_datetime(
                ["2025-04-01 10:00", "2025-04-11 10:00", "2025-04-11 11:00"]
            ),
            "customer_id": [1, 1, 1],
            "terminal_id": [1, 2, 3],
            "tx_amount": [1e9, 0.01, 0.03],
            "tx_fraud": np.zeros(3, dtype=np.int8),
        }
    )
    f = build_features(tx).set_index("transaction_id")
    assert f.loc[3, "customer_id_avg_amount_1day_window"] == pytest.approx(0.02, rel=1e-7)
    assert f.loc[3, "customer_id_avg_amount_30day_window"] == pytest.approx(
        (1e9 + 0.04) / 3, rel=1e-12
    )


def test_fraud_amount_mean_is_zero_wherever_no_fraud_is_known() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    tx = pd.DataFrame(
        {
            "transaction_id": np.arange(n),
            "tx_datetime": pd.Timestamp("2025-04-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 60 * 86_400, n)), unit="s"),
            "customer_id": rng.integers(0, 300, n),
            "terminal_id": rng.integers(0, 40, n),
            "tx_amount": rng.uniform(1, 500, n).round(2),
            "tx_fraud": (rng.random(n) < 0.03).astype(np.int8),
        }
    )
    f = build_features(tx)
    for w in (7, 30):
        none_known = f[f"terminal_id_nb_fraud_{w}day_window"] == 0
        assert 0 < none_known.sum() < n
        assert (f.loc[none_known, f"terminal_id_fraud_avg_amount_{w}day_window"] == 0.0).all()
        assert (f.loc[~none_known, f"terminal_id_fraud_avg_amount_{w}day_window"] > 0.0).all()


def test_other_input_dtypes_give_the_same_features() -> None:
    tx = pd.DataFrame(
        {
            "transaction_id": [1, 2, 3],
            "tx_datetime": pd.to_datetime(
                ["2025-04-01 10:00", "2025-04-01 11:00", "2025-04-09 00:00"]
            ),
            "customer_id": [1, 1, 2],
            "terminal_id": [4, 4, 4],
            "tx_amount": [10.0, 20.0, 5.0],
            "tx_fraud": np.array([1, 0, 0], dtype=np.int8),
        }
    )
    expected = build_features(tx)
    # microsecond timestamps (as Parquet files often carry), float ids, a 0/1 integer mask
    other = tx.astype({"tx_datetime": "datetime64[us]", "transaction_id": "float64"})
    got = build_features(other)
    # a non-integer id column is passed through as it came; the features are the same
    assert got["transaction_id"].dtype == np.float64
    assert got["transaction_id"].tolist() == [1.0, 2.0, 3.0]
    pd.testing.assert_frame_equal(got.iloc[:, 1:], expected.iloc[:, 1:])
    assert expected["transaction_id"].dtype == np.int64
    masked = build_features(tx, rows=np.array([1, 0, 1]))
    pd.testing.assert_frame_equal(
        masked, expected.iloc[[0, 2]].reset_index(drop=True), check_index_type=False
    )


def test_an_unknown_aggregate_is_refused_by_name(monkeypatch) -> None:
    from ml_platform.features import batch
    from ml_platform.features import definitions as defs

    bogus = defs.FeatureDef("customer_id_bogus_7day", "bogus", "customer_id", 7 * defs.DAY_NS)  # type: ignore[arg-type]
    fs = dataclasses.replace(defs.feature_set(), features=(*defs.FEATURES, bogus))
    monkeypatch.setattr(batch, "feature_set", lambda use_case: fs)
    with pytest.raises(ValueError) as err:
        build_features(_tx())
    assert str(err.value) == "feature 'customer_id_bogus_7day': unknown aggregate 'bogus'"


def test_features_for_days_default_to_a_seven_day_delay() -> None:
    from ml_platform.features.batch import build_features_for_days

    tx = _tx().assign(tx_datetime=pd.to_datetime(["2025-04-01", "2025-04-08"]))
    out = build_features_for_days(tx, ["2025-04-08"])
    # the 04-01 transaction is exactly 7 days old: inside the delayed terminal window
    assert out["terminal_id_nb_tx_7day_window"].tolist() == [1.0]
    assert build_features_for_days(tx, ["2025-04-08"], 8)[
        "terminal_id_nb_tx_7day_window"
    ].tolist() == [0.0]


def test_an_int32_event_id_column_comes_back_as_int64() -> None:
    """Integer ids of any width come back as the lake's int64, with the same values."""
    tx = _tx()
    expected = build_features(tx)
    got = build_features(tx.astype({"transaction_id": np.int32}))
    assert got["transaction_id"].dtype == np.int64
    pd.testing.assert_frame_equal(got, expected)


def _routes(root: Path) -> UseCase:
    """The delays use case (a regression label, two value columns) with a matured mean of the
    label and windowed means of both value columns on one entity."""
    from ml_platform_tests.unit.test_training_generic import _delays, _write

    spec = _delays() | {"name": "routes"}
    window = {"kind": "window", "entity": "origin", "function": "mean", "window": "1d"}
    spec["features"] = [
        {**window, "name": "origin_delay_1d", "of": "delay", "matured": True},
        {**window, "name": "origin_load_1d", "of": "load"},
        {**window, "name": "origin_distance_1d", "of": "distance"},
    ]
    return _write(root, spec)


def test_a_numeric_label_mean_and_value_means_on_one_entity(tmp_path) -> None:
    """Each mean reads its own running sums: the label's (exact next to a huge old delay,
    as for amounts) and each value column's."""
    flights = pd.DataFrame(
        {
            "flight": ["j0", "e1", "j1", "e2", "j2"],
            "departs": pd.to_datetime(
                [
                    "2025-03-01 00:00",
                    "2025-04-01 10:00",
                    "2025-04-01 10:00",
                    "2025-04-02 11:00",
                    "2025-04-02 11:00",
                ]
            ),
            "origin": ["JFK", "EWR", "JFK", "EWR", "JFK"],
            "distance": [1.0, 100.0, 2.0, 300.0, 4.0],
            "load": [0.1, 0.5, 0.2, 0.7, 0.4],
            "delay": [1e17, 30.0, 3.0, 10.0, 5.0],
        }
    )
    got = build_features(flights, 1, use_case=_routes(tmp_path)).set_index("flight")
    # e2 and j2: the matured window (t - 2d, t - 1d] holds e1 and j1, the plain one themselves
    assert got.loc[["e2", "j2"], "origin_delay_1d"].tolist() == [30.0, 3.0]
    assert got.loc[["e2", "j2"], "origin_load_1d"].tolist() == [0.7, 0.4]
    assert got.loc[["e2", "j2"], "origin_distance_1d"].tolist() == [300.0, 4.0]
    assert got.loc[["e1", "j1"], "origin_delay_1d"].tolist() == [0.0, 0.0]
