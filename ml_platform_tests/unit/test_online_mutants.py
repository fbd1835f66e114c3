"""Online request parsing: each refused field is named with the value received."""

from __future__ import annotations

import pytest

from ml_platform.features.online import parse_tx
from ml_platform.features.stores.base import EventRecord, to_ns

REQUEST = {
    "transaction_id": 11,
    "tx_datetime": "2025-04-01 06:00:00",
    "customer_id": 22,
    "terminal_id": 33,
    "tx_amount": 4.5,
}


class _Request:
    """An object with the request fields as attributes (a pydantic model, say)."""

    def __init__(self, **fields: object) -> None:
        self.__dict__.update(fields)


def test_dict_and_object_requests_parse_to_the_same_record() -> None:
    expected = EventRecord(11, to_ns("2025-04-01 06:00:00"), (22, 33), (4.5,))
    assert parse_tx(REQUEST) == expected
    assert parse_tx(_Request(**REQUEST)) == expected
    # integral floats are accepted as ids; a zero amount is a valid amount
    assert parse_tx({**REQUEST, "customer_id": 22.0, "tx_amount": 0}) == EventRecord(
        11, expected.time_ns, (22, 33), (0.0,)
    )


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"transaction_id": None}, "transaction_id: missing"),
        ({"tx_amount": None}, "tx_amount: missing"),
        ({"customer_id": True}, "customer_id: must be an integer, got True"),
        ({"terminal_id": 2.5}, "terminal_id: must be an integer, got 2.5"),
        ({"transaction_id": 1.25}, "transaction_id: must be an integer, got 1.25"),
        ({"tx_amount": -0.01}, "tx_amount: must be finite and >= 0, got -0.01"),
        ({"tx_amount": float("inf")}, "tx_amount: must be finite and >= 0, got inf"),
        ({"tx_amount": float("nan")}, "tx_amount: must be finite and >= 0, got nan"),
    ],
)
def test_bad_request_message_is_exact(patch: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_tx({**REQUEST, **patch})
    assert str(err.value) == message


def test_missing_or_bad_timestamp_names_the_field() -> None:
    with pytest.raises(ValueError) as err:
        parse_tx(_Request(**{**REQUEST, "tx_datetime": None}))
    assert str(err.value) == "tx_datetime: not a timestamp (tx_datetime: missing)"
    with pytest.raises(ValueError) as err:
        parse_tx({**REQUEST, "tx_datetime": "noonish"})
    assert str(err.value).startswith("tx_datetime: not a timestamp (")


def test_parsed_records_are_used_as_is_and_compute_and_record_appends(tmp_path) -> None:
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.sqlite import SQLiteStore

    count = FEATURE_COLUMNS.index("customer_id_nb_tx_1day_window")
    engine = OnlineFeatureEngine(SQLiteStore(tmp_path / "s.sqlite", label_delay_days=7), 7)
    record = parse_tx(REQUEST)
    first = engine.compute_and_record(record)  # a parsed record is taken as it is
    assert first[count] == 1
    assert engine.compute(record)[count] == 1  # recorded once, not counted twice
    second = {**REQUEST, "transaction_id": 12, "tx_datetime": "2025-04-01 07:00:00"}
    values = engine.compute_and_record(second)
    assert values[count] == 2
    engine.record(parse_tx({**second, "transaction_id": 13}))
    later = {**second, "transaction_id": 14, "tx_datetime": "2025-04-01 08:00:00"}
    assert engine.compute(later)[count] == 4


def test_an_object_request_missing_a_field_is_named() -> None:
    fields = {k: v for k, v in REQUEST.items() if k != "tx_amount"}
    with pytest.raises(ValueError) as err:
        parse_tx(_Request(**fields))
    assert str(err.value) == "tx_amount: missing"


def _engine(tmp_path, d: int | None = None):
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / f"s{d}.sqlite", label_delay_days=d or 7)
    return OnlineFeatureEngine(store) if d is None else OnlineFeatureEngine(store, d)


def test_default_label_delay_is_seven_days(tmp_path) -> None:
    assert _engine(tmp_path).d == 7


def test_calendar_flags_and_gaps_at_the_last_nanosecond(tmp_path) -> None:
    from ml_platform.features import FEATURE_COLUMNS

    engine = _engine(tmp_path, 7)
    col = {name: FEATURE_COLUMNS.index(name) for name in FEATURE_COLUMNS}
    expected = {  # 2025-04-04 is a Friday
        "2025-04-04 23:59:59.999999999": (0.0, 0.0),
        "2025-04-05 00:00:00": (1.0, 1.0),
        "2025-04-06 23:59:59.999999999": (1.0, 0.0),
        "2025-04-07 00:00:00": (0.0, 1.0),
        "2025-04-07 06:59:59.999999999": (0.0, 1.0),
        "2025-04-07 07:00:00": (0.0, 0.0),
    }
    for i, (when, (weekend, night)) in enumerate(expected.items()):
        values = engine.compute({**REQUEST, "transaction_id": 100 + i, "tx_datetime": when})
        assert (values[col["tx_during_weekend"]], values[col["tx_during_night"]]) == (
            weekend,
            night,
        ), when
    engine.record(REQUEST)  # 2025-04-01 06:00
    an_hour_later = {**REQUEST, "transaction_id": 12, "tx_datetime": "2025-04-01 07:00:00"}
    assert engine.compute(an_hour_later)[col["customer_id_seconds_since_prev_tx"]] == 3600.0


def _with_feature(monkeypatch, extra) -> None:
    """The engine serves fraud's features plus ``extra``."""
    import dataclasses

    from ml_platform.features import definitions as defs
    from ml_platform.features import online

    fs = dataclasses.replace(defs.feature_set(), features=(*defs.FEATURES, extra))
    monkeypatch.setattr(online, "feature_set", lambda use_case: fs)


def test_a_delayed_mean_amount_definition_is_served(tmp_path, monkeypatch) -> None:
    from ml_platform.features import definitions as defs

    extra = defs.FeatureDef(
        "customer_id_avg_amount_7day_delayed",
        "mean_amount",
        "customer_id",
        7 * defs.DAY_NS,
        True,
        value="tx_amount",
    )
    _with_feature(monkeypatch, extra)
    engine = _engine(tmp_path, 1)
    for i, (when, amount) in enumerate(
        [("2025-03-20 10:00", 1000.0), ("2025-04-01 10:00", 10.0), ("2025-04-02 09:00", 30.0)]
    ):
        engine.record({**REQUEST, "transaction_id": i, "tx_datetime": when, "tx_amount": amount})

    def mean_at(when: str, customer: int = 22) -> float:
        tx = {**REQUEST, "transaction_id": 99, "tx_datetime": when, "customer_id": customer}
        return engine.compute(tx)[-1]

    # window (t - 8d, t - 1d]: the 03-20 amount is too old, the edge t - 1d is included
    assert mean_at("2025-04-03 10:00") == 20.0
    assert mean_at("2025-04-02 10:00") == 10.0
    assert mean_at("2025-04-02 10:00", customer=5) == 0.0  # empty window


def test_an_unsupported_undelayed_aggregate_is_refused(tmp_path, monkeypatch) -> None:
    from ml_platform.features import definitions as defs

    extra = defs.FeatureDef(
        "customer_id_value_7day", "value", "customer_id", 7 * defs.DAY_NS, value="tx_amount"
    )
    _with_feature(monkeypatch, extra)
    with pytest.raises(ValueError) as err:
        _engine(tmp_path, 7).compute(REQUEST)
    assert str(err.value) == "feature 'customer_id_value_7day': unsupported 'now_value'"


def test_a_fresh_parser_and_engine_follow_the_declaration(tmp_path) -> None:
    """Built afresh (the default use case's parser is cached per process): the declared
    non-negative rule, the use case as given or by name, the output columns."""
    from ml_platform.data.validation import default_use_case
    from ml_platform.features import FEATURE_COLUMNS
    from ml_platform.features.online import RequestParser, resolve_use_case

    fraud = default_use_case()
    parse = RequestParser(fraud)
    assert parse({**REQUEST, "tx_amount": 0.0}).values == (0.0,)
    with pytest.raises(ValueError) as err:
        parse({**REQUEST, "tx_amount": -0.01})
    assert str(err.value) == "tx_amount: must be finite and >= 0, got -0.01"
    assert resolve_use_case(fraud) is fraud
    assert resolve_use_case("fraud") is fraud  # the default use case, loaded once
    assert _engine(tmp_path, 7).columns == FEATURE_COLUMNS


def test_a_first_event_waits_exactly_the_whole_window(tmp_path) -> None:
    """No previous event: seconds since the previous one is capped at the window, 30 days."""
    from ml_platform.features import FEATURE_COLUMNS

    values = _engine(tmp_path, 7).compute(REQUEST)
    assert values[FEATURE_COLUMNS.index("customer_id_seconds_since_prev_tx")] == 30 * 86_400.0


def test_a_use_case_by_name_and_its_only_non_negative_rule(tmp_path, monkeypatch) -> None:
    """Another use case than fraud, found by name in an extra folder; its weight column has
    no rule but non_negative, and that one rule is still checked online."""
    from ml_platform.features.online import RequestParser, resolve_use_case
    from ml_platform.settings import get_settings
    from ml_platform_tests.unit.test_validation_generic import write_parcels

    write_parcels(tmp_path)
    monkeypatch.setenv("ML_PLATFORM_USE_CASE_DIRS", str(tmp_path))
    get_settings.cache_clear()
    try:
        parcels = resolve_use_case("parcels")
    finally:
        monkeypatch.delenv("ML_PLATFORM_USE_CASE_DIRS")
        get_settings.cache_clear()
    assert parcels.name == "parcels"
    parse = RequestParser(parcels)
    request = {
        "parcel_id": 1,
        "sent_at": "2025-04-01 06:00:00",
        "depot": "north",
        "courier": "ann",
        "weight_kg": 0.0,
    }
    assert parse(request).values == (0.0,)
    with pytest.raises(ValueError) as err:
        parse({**request, "weight_kg": -0.5})
    assert str(err.value) == "weight_kg: must be finite and >= 0, got -0.5"


def test_each_windowed_mean_reads_its_own_value_column(tmp_path) -> None:
    """Two value columns: the online means of each read that column (as the batch engine)."""
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.sqlite import SQLiteStore
    from ml_platform_tests.unit.test_batch_mutants import _routes

    uc = _routes(tmp_path)
    store = SQLiteStore(tmp_path / "routes.sqlite", label_delay_days=1, use_case=uc)
    engine = OnlineFeatureEngine(store, label_delay_days=1, use_case=uc)
    flight = {"departs": "2025-04-01 10:00", "origin": "EWR", "distance": 100.0, "load": 0.5}
    engine.record({**flight, "flight": "e1"})
    later = {**flight, "flight": "e2", "departs": "2025-04-01 11:00"}
    values = engine.compute({**later, "distance": 300.0, "load": 0.7})
    col = {name: i for i, name in enumerate(engine.columns)}
    assert values[col["origin_load_1d"]] == pytest.approx(0.6)
    assert values[col["origin_distance_1d"]] == pytest.approx(200.0)
