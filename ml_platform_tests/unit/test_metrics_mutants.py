"""Metric input checks and the undefined cases: NaN, never a crash or a silent zero."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd
import pytest

from ml_platform.training import metrics
from ml_platform.use_cases.loader import UseCase


def test_label_checks_name_the_problem() -> None:
    with pytest.raises(ValueError) as err:
        metrics.roc_auc(np.zeros((2, 2)), np.zeros(4))
    assert str(err.value) == "y_true: expected a 1-D array, got shape (2, 2)"
    with pytest.raises(ValueError) as err:
        metrics.average_precision(np.array([0, 2]), np.array([0.1, 0.2]))
    assert str(err.value) == "y_true: labels must be 0/1"


def test_undefined_metrics_are_nan() -> None:
    assert math.isnan(metrics.roc_auc(np.array([1, 1]), np.array([0.1, 0.9])))
    assert math.isnan(metrics.average_precision(np.array([0, 0]), np.array([0.1, 0.9])))
    assert math.isnan(metrics.average_precision(np.array([], dtype=int), np.array([])))


def test_auc_and_ap_on_a_hand_checked_ranking() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.5, 0.8])
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)
    assert metrics.average_precision(y, s) == pytest.approx((1.0 + 2 / 3) / 2)


@pytest.mark.parametrize("k", [0, -3])
def test_k_must_be_positive(k: int) -> None:
    df = pd.DataFrame({"customer_id": [1], "tx_fraud": [0], "day": ["d"]})
    for fn in (metrics.card_precision_at_k, metrics.protocol_card_precision_at_k):
        with pytest.raises(ValueError) as err:
            fn(df, np.array([0.5]), k=k, day_col="day")
        assert str(err.value) == f"k: must be positive, got {k}"


def _cards(rows: list[tuple[str, int, float, int]]) -> pd.DataFrame:
    """rows of (day, customer, score, fraud), timestamped at noon."""
    return pd.DataFrame(
        {
            "tx_datetime": pd.to_datetime([r[0] for r in rows]) + pd.Timedelta(hours=12),
            "customer_id": [r[1] for r in rows],
            "score": [r[2] for r in rows],
            "tx_fraud": np.array([r[3] for r in rows], dtype=np.int8),
        }
    )


def test_default_k_is_100_and_scores_may_be_a_column_name() -> None:
    df = _cards([("2025-01-01", 1, 0.9, 1), ("2025-01-01", 2, 0.1, 0)])
    assert metrics.card_precision_at_k(df, "score") == pytest.approx(1 / 100)
    assert metrics.protocol_card_precision_at_k(df, "score") == (0.01, [0.01])
    assert len(metrics.protocol_alerts(df, "score", k=1)) == 1
    many = _cards([("2025-01-01", c, c / 1000, 0) for c in range(101)])
    assert len(metrics.protocol_alerts(many, "score")) == 100


def test_an_explicit_day_column_overrides_the_timestamp() -> None:
    # same calendar day, but the caller's day column splits it in two
    df = _cards([("2025-01-01", 1, 0.9, 1), ("2025-01-01", 2, 0.8, 0)]).assign(day=["a", "b"])
    assert metrics.card_precision_at_k(df, "score", k=1) == 1.0
    assert metrics.card_precision_at_k(df, "score", k=1, day_col="day") == 0.5
    assert metrics.protocol_card_precision_at_k(df, "score", k=1, day_col="day") == (
        0.5,
        [1.0, 0.0],
    )
    alerts = metrics.protocol_alerts(df, "score", k=1, day_col="day")
    assert alerts["day"].tolist() == ["a", "b"] and alerts["customer_id"].tolist() == [1, 2]
    # without it both cards fall on one day and only the best one is in the top 1
    assert metrics.protocol_card_precision_at_k(df, "score", k=1) == (1.0, [1.0])
    assert metrics.protocol_alerts(df, "score", k=1)["customer_id"].tolist() == [1]


def test_tied_scores_keep_the_first_card_seen() -> None:
    # customer 5 (fraud) comes first, customer 2 (legit) has the same score: the top 1 is 5
    df = _cards([("2025-01-01", 5, 0.5, 1), ("2025-01-01", 2, 0.5, 0)])
    assert metrics.card_precision_at_k(df, "score", k=1) == 1.0
    assert metrics.protocol_card_precision_at_k(df, "score", k=1) == (1.0, [1.0])
    assert metrics.protocol_alerts(df, "score", k=1)["customer_id"].tolist() == [5]


def test_empty_input_gives_nan_and_no_alerts() -> None:
    empty = _cards([])
    assert math.isnan(metrics.card_precision_at_k(empty, "score", k=1))
    cp, per_day = metrics.protocol_card_precision_at_k(empty, "score", k=1)
    assert math.isnan(cp) and per_day == []
    alerts = metrics.protocol_alerts(empty, "score", k=1)
    assert alerts.empty and list(alerts.columns) == ["day", "customer_id", "score", "tx_fraud"]


def test_alerts_are_renumbered_across_days() -> None:
    df = _cards(
        [
            ("2025-01-01", 1, 0.9, 1),
            ("2025-01-01", 2, 0.3, 0),
            ("2025-01-02", 3, 0.8, 0),
            ("2025-01-02", 4, 0.2, 0),
        ]
    )
    alerts = metrics.protocol_alerts(df, "score", k=1)
    assert alerts.index.tolist() == [0, 1] and alerts["customer_id"].tolist() == [1, 3]


def test_frame_errors_name_the_missing_column() -> None:
    df = _cards([("2025-01-01", 1, 0.9, 1)])
    cases = [
        (df.drop(columns="customer_id"), "customer_id: column required for entity_precision_at_k"),
        (df.drop(columns="tx_fraud"), "tx_fraud: column required for entity_precision_at_k"),
        (
            df.drop(columns="tx_datetime"),
            "tx_datetime: column required to find each event's day",
        ),
    ]
    for frame, message in cases:
        with pytest.raises(ValueError) as err:
            metrics.card_precision_at_k(frame, "score", k=1)
        assert str(err.value) == message
    with pytest.raises(ValueError) as err:
        metrics.card_precision_at_k(df, np.array([0.1, 0.2]), k=1)
    assert str(err.value) == "score: 2 values for 1 rows"


def test_protocol_test_set_errors_name_frame_and_column() -> None:
    df = _cards([("2025-01-01", 1, 0.9, 1)])
    with pytest.raises(ValueError) as err:
        metrics.protocol_test_mask(
            df.drop(columns="tx_datetime"), df, first_train_day=date(2025, 1, 1), label_delay=1
        )
    assert str(err.value) == "test.tx_datetime: column required for the protocol test set"
    with pytest.raises(ValueError) as err:
        metrics.protocol_test_mask(
            df, df.drop(columns="tx_fraud"), first_train_day=date(2025, 1, 1), label_delay=1
        )
    assert str(err.value) == "history.tx_fraud: column required for the protocol test set"
    with pytest.raises(ValueError) as err:
        metrics.protocol_metrics(
            df, np.zeros(3), df, first_train_day=date(2025, 1, 1), label_delay=1
        )
    assert str(err.value) == "score: 3 values for 1 test rows"


def test_protocol_metrics_use_k_and_round_per_day_values() -> None:
    rows = [("2025-01-10", c, 0.9 - c / 100, int(c == 1)) for c in range(1, 4)]
    rows += [("2025-01-11", c, 0.5, int(c in (4, 5))) for c in range(4, 7)]
    test = _cards(rows)
    out = metrics.protocol_metrics(
        test,
        test["score"].to_numpy(),
        test.iloc[:0],
        first_train_day=date(2025, 1, 1),
        label_delay=1,
        k=3,
    )
    assert out["card_precision_at_3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert out["card_precision_at_3_per_day"] == [0.3333, 0.6667]
    assert {k: out[k] for k in list(out)[4:]} == {
        "n_test_transactions": 6,
        "n_scored_after_protocol": 6,
        "n_frauds_after_protocol": 3,
    }
    assert list(out)[:4] == [
        "roc_auc",
        "average_precision",
        "card_precision_at_3",
        "card_precision_at_3_per_day",
    ]


def test_validation_metrics_on_a_hand_checked_window() -> None:
    df = _cards(
        [
            ("2025-01-01", 1, 0.1, 0),
            ("2025-01-01", 2, 0.4, 1),
            ("2025-01-02", 3, 0.5, 0),
            ("2025-01-02", 4, 0.8, 1),
        ]
    ).assign(day=["d1", "d2", "d1", "d2"])
    out = metrics.validation_metrics(df, df["score"].to_numpy(), k=1)
    assert out == {
        "roc_auc": pytest.approx(0.75),
        "average_precision": pytest.approx((1.0 + 2 / 3) / 2),
        "card_precision_at_1": 1.0,  # day 1: card 2 (fraud); day 2: card 4 (fraud)
        "n_transactions": 4.0,
        "n_frauds": 2.0,
    }
    # the caller's days pair cards 1 and 3 (both legit), 2 and 4 (both fraud)
    by_col = metrics.validation_metrics(df, df["score"].to_numpy(), k=1, day_col="day")
    assert by_col["card_precision_at_1"] == 0.5
    assert "card_precision_at_100" in metrics.validation_metrics(df, df["score"].to_numpy())


def test_regression_metrics_on_hand_checked_values() -> None:
    y = np.array([1.0, 2.0, 4.0, 9.0])
    p = np.array([2.0, 2.0, 1.0, 9.0])  # errors -1, 0, 3, 0
    assert metrics.mean_absolute_error(y, p) == 1.0
    assert metrics.root_mean_squared_error(y, p) == math.sqrt(10 / 4)
    # total sum of squares around the mean 4: 9 + 4 + 0 + 25 = 38; residual 10
    assert metrics.r2(y, p) == 1.0 - 10 / 38
    assert metrics.r2(y, y) == 1.0 and metrics.r2([1, 2, 3], [3, 2, 1]) == -3.0
    ints = [1, 2, 4, 9]  # integer labels are read as numbers, not refused
    assert metrics.mean_absolute_error(ints, [2, 2, 1, 9]) == 1.0


def test_regression_metrics_are_nan_when_undefined_and_refuse_matrices() -> None:
    empty = np.array([])
    assert math.isnan(metrics.mean_absolute_error(empty, empty))
    assert math.isnan(metrics.root_mean_squared_error(empty, empty))
    assert math.isnan(metrics.r2(empty, empty))
    assert math.isnan(metrics.r2(np.full(3, 5.0), np.array([5.0, 5.0, 4.0])))  # constant label
    for metric in (metrics.mean_absolute_error, metrics.root_mean_squared_error, metrics.r2):
        with pytest.raises(ValueError) as err:
            metric(np.zeros((2, 2)), np.zeros(2))
        assert str(err.value) == "y_true: expected a 1-D array, got shape (2, 2)"
        with pytest.raises(ValueError) as err:
            metric(np.array([1.0, 2.0]), np.zeros((2, 1)))
        assert str(err.value) == "prediction: expected a 1-D array, got shape (2, 1)"


def test_log_loss_is_the_clipped_binary_cross_entropy() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.4, 0.5, 0.1])
    expected = -(math.log(0.8) + math.log(0.6) + math.log(0.5) + math.log(0.9)) / 4
    assert metrics.log_loss(y, p) == pytest.approx(expected, rel=1e-12)
    # a sure and right score costs (almost) nothing; a sure and wrong one is clipped at 1e-15
    assert metrics.log_loss(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(
        -math.log(1 - 1e-15), abs=1e-15
    )
    assert metrics.log_loss(np.array([1]), np.array([0])) == pytest.approx(-math.log(1e-15))
    assert metrics.log_loss(np.array([0]), np.array([1.0])) == pytest.approx(
        -math.log(1e-15), rel=1e-3
    )
    assert math.isnan(metrics.log_loss(np.array([], dtype=int), np.array([])))
    with pytest.raises(ValueError, match="y_true: labels must be 0/1"):
        metrics.log_loss(np.array([0, 2]), np.array([0.1, 0.2]))


def late_flights(root, extra_metrics: list[dict]) -> UseCase:
    """The generic training tests' flights as a binary task (late or not), AP first, no
    gate metric: a use case whose columns are not fraud's."""
    from ml_platform_tests.unit.test_training_generic import _delays, _write

    spec = _delays() | {"name": "late"}
    spec["label"] = {"column": "was_late", "task": "binary", "delay_days": 1}
    spec["task"] = {
        "candidates": ["logistic_regression"],
        "primary_metric": {"name": "average_precision", "direction": "maximize"},
        "extra_metrics": extra_metrics,
        "decision": {"kind": "threshold"},
    }
    spec["settings"] = {k: v for k, v in spec["settings"].items() if k != "gate_min"}
    return _write(root, spec)


def test_the_protocol_follows_the_declared_entity_and_label(tmp_path) -> None:
    """A use case whose entity and label are not fraud's: every protocol step reads its own
    columns (fraud's would be missing)."""
    from ml_platform_tests.unit.test_training_generic import _delays, _write

    hits = {"name": "hits", "function": "entity_precision_at_k", "entity": "origin", "k": 1}
    late = late_flights(tmp_path, [hits])
    d = pd.Timestamp("2025-04-10")
    test = pd.DataFrame(
        {
            "departs": [d, d, d + pd.Timedelta(days=1), d + pd.Timedelta(days=1)],
            "origin": ["EWR", "JFK", "LGA", "JFK"],
            "was_late": [1, 0, 0, 1],
        }
    )
    score = np.array([0.9, 0.2, 0.3, 0.8])
    # LGA was late on 04-08: with a 2-day delay known on 04-11 (the edge), with 3 not yet
    history = pd.DataFrame(
        {"departs": [d - pd.Timedelta(days=2)], "origin": ["LGA"], "was_late": [1]}
    )
    first = date(2025, 4, 1)
    for delay, kept in [(3, [True] * 4), (2, [True, True, False, True])]:
        got = metrics.protocol_test_mask(
            test, history, first_train_day=first, label_delay=delay, use_case=late
        )
        assert got.tolist() == kept
    got = metrics.protocol_metrics(
        test, score, history, first_train_day=first, label_delay=2, k=1, use_case=late
    )
    assert got["n_scored_after_protocol"] == 3 and got["n_frauds_after_protocol"] == 2
    assert got["card_precision_at_1_per_day"] == [1.0, 1.0]
    assert got["roc_auc"] == 1.0
    assert metrics.card_precision_at_k(test, score[[1, 0, 2, 3]], k=1, use_case=late) == 0.5
    cp, per_day = metrics.protocol_card_precision_at_k(test, score, k=1, use_case=late)
    assert (cp, per_day) == (1.0, [1.0, 1.0])
    with pytest.raises(ValueError) as err:
        metrics.card_precision_at_k(test, score, k=1, use_case=_write(tmp_path, _delays()))
    assert str(err.value) == (
        "task.extra_metrics: use case 'delays' declares no entity_precision_at_k"
    )


def test_entity_precision_ranks_the_entity_asked_for(tmp_path) -> None:
    """Two declared entities: each measure, and a direct call, ranks its own entity, not the
    first one the task declares; the default k is 100."""
    from ml_platform_tests.unit.test_training_generic import _delays, _write

    spec = _delays() | {"name": "routes"}
    spec["schema"] = spec["schema"] | {
        "entities": {"origin": "string", "dest": "string"},
        "request": [*spec["schema"]["request"], "dest"],
    }
    spec["label"] = {"column": "was_late", "task": "binary", "delay_days": 1}
    spec["task"] = {
        "candidates": ["logistic_regression"],
        "primary_metric": {"name": "average_precision", "direction": "maximize"},
        "extra_metrics": [
            {
                "name": "origin_hits",
                "function": "entity_precision_at_k",
                "entity": "origin",
                "k": 1,
            },
            {"name": "dest_hits", "function": "entity_precision_at_k", "entity": "dest", "k": 1},
        ],
        "decision": {"kind": "threshold"},
    }
    spec["settings"] = {k: v for k, v in spec["settings"].items() if k != "gate_min"}
    routes = _write(tmp_path, spec)
    d = pd.Timestamp("2025-04-10 09:00")
    test = pd.DataFrame(
        {
            "departs": [d, d, d],
            "origin": ["EWR", "JFK", "LGA"],
            "dest": ["SFO", "LAX", "SFO"],
            "was_late": [0, 1, 1],
        }
    )
    score = np.array([0.9, 0.8, 0.1])
    # the top origin (EWR) was on time; the top destination (SFO) had a late flight; with
    # the default k of 100 both late destinations count: 2 / 100
    measures = metrics.task_metrics(routes).measures
    assert measures["origin_hits"](test, score) == 0.0
    assert measures["dest_hits"](test, score) == 1.0
    assert metrics.entity_precision_at_k(test, score, 1, entity="dest", use_case=routes) == 1.0
    assert metrics.entity_precision_at_k(test, score, 1, use_case=routes) == 0.0
    assert metrics.entity_precision_at_k(test, score, entity="dest", use_case=routes) == 0.02
