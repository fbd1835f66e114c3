"""The API's request/answer models and the prediction-log layout, derived from a declaration.

A second use case (order returns: string keys, a non-negative float, an int range, a one_of
rule) is a real folder in ``tmp_path`` loaded by the real loader; fraud's generated models and
log layout are compared with the hand-written ones they replace (captured below).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from ml_platform.serving import schemas
from ml_platform.serving.prediction_log import (
    TABLE,
    LogEntry,
    PredictionLogWriter,
    log_layout,
    read_prediction_log,
    served_layout,
)
from ml_platform.serving.schemas import (
    feature_vector_model,
    prediction_model,
    request_model,
    served_use_case,
)
from ml_platform.serving.scoring import ScoringModel
from ml_platform.use_cases import load_use_case
from ml_platform.use_cases.derive import example_request
from ml_platform.use_cases.loader import USE_CASE_FILE

INT64_MAX = 2**63 - 1

RETURNS: dict[str, Any] = {
    "name": "returns",
    "description": "Will an online order be sent back?",
    "service": "shop.serving:ReturnsPredictor",
    "schema": {
        "event_id": {"column": "order_id", "type": "string"},
        "event_time": "ordered_at",
        "entities": {"shopper": "string", "seller": "string"},
        "values": {"basket_value": "float", "items": "int"},
        "extras": {"channel": "string"},
        "request": [
            "order_id",
            "ordered_at",
            "shopper",
            "seller",
            "basket_value",
            "items",
            "channel",
        ],
        "rules": [
            {"column": "basket_value", "check": "non_negative"},
            {"column": "items", "check": "range", "min": 0.5, "max": 50.5},  # int: 1..50
            {"column": "basket_value", "check": "range", "max": 10_000},
            {"column": "channel", "check": "one_of", "values": ["web", "app"]},
        ],
    },
    "label": {"column": "returned", "task": "binary", "delay_days": 14},
    "features": [
        {"kind": "row", "name": "basket_value", "function": "value", "of": "basket_value"},
        {
            "kind": "window",
            "name": "shopper_orders_7day",
            "entity": "shopper",
            "function": "count",
            "window": "7d",
        },
    ],
    "task": {
        "candidates": ["logistic_regression"],
        "primary_metric": {"name": "average_precision", "direction": "maximize"},
        "decision": {"kind": "threshold"},
    },
    "source": {"default": "files"},
    "settings": {"start_date": "2025-01-01", "end_date": "2025-02-01"},
}

GOOD = {
    "order_id": "o-17",
    "ordered_at": "2025-01-01T09:30:00+01:00",
    "shopper": "s-3",
    "seller": "acme",
    "basket_value": 0,
    "items": 2,
    "channel": "app",
}


def write_returns(root: Path, data: dict[str, Any] | None = None):
    folder = root / "returns"
    folder.mkdir(parents=True)
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data or RETURNS, sort_keys=False))
    return load_use_case(folder)


@pytest.fixture
def returns(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("RETURNS_SOURCE_DIR", raising=False)
    return write_returns(tmp_path)


# --- a use case with string keys --------------------------------------------------------------


def test_generated_request_model_takes_what_the_declaration_says(returns) -> None:
    model = request_model(returns)
    tx = model.model_validate_json(json.dumps({**GOOD, "coupon": "ignored"}))
    assert tx.as_record() == {
        **GOOD,
        "ordered_at": datetime(2025, 1, 1, 8, 30),  # aware -> naive UTC
        "basket_value": 0.0,
    }
    assert list(tx.as_record()) == RETURNS["schema"]["request"]
    assert model.__name__ == "ReturnsRequest"
    assert request_model(returns, "Order").__name__ == "Order"


@pytest.mark.parametrize(
    ("change", "field", "kind"),
    [
        ({"shopper": 12}, "shopper", "string_type"),
        ({"order_id": 17}, "order_id", "string_type"),
        ({"basket_value": -0.5}, "basket_value", "greater_than_equal"),
        ({"basket_value": 10_000.5}, "basket_value", "less_than_equal"),
        ({"basket_value": "3.5"}, "basket_value", "float_type"),
        ({"basket_value": True}, "basket_value", "float_type"),
        ({"basket_value": 1e400}, "basket_value", "finite_number"),
        ({"items": 0}, "items", "greater_than_equal"),
        ({"items": 51}, "items", "less_than_equal"),
        ({"items": 2.5}, "items", "int_type"),
        ({"channel": "mail"}, "channel", "value_error"),
        ({"ordered_at": "2262-04-12T00:00:00"}, "ordered_at", "value_error"),
        ({"ordered_at": "soon"}, "ordered_at", "datetime_parsing"),
        ({"seller": None}, "seller", "string_type"),
    ],
)
def test_generated_request_model_refuses_naming_the_field(
    returns, change: dict[str, Any], field: str, kind: str
) -> None:
    body = json.dumps({**GOOD, **change})
    with pytest.raises(ValidationError) as err:
        request_model(returns).model_validate_json(body)
    errors = err.value.errors()
    assert [(e["loc"], e["type"]) for e in errors] == [((field,), kind)]


def test_refusals_say_the_declared_reason(returns) -> None:
    model = request_model(returns)
    with pytest.raises(ValidationError, match="channel\n  Value error, not one of web, app"):
        model.model_validate_json(json.dumps({**GOOD, "channel": "mail"}))
    with pytest.raises(ValidationError, match="outside the supported range 1678-01-01..2262-01-01"):
        model.model_validate_json(json.dumps({**GOOD, "ordered_at": "1600-01-01T00:00:00"}))
    missing = {k: v for k, v in GOOD.items() if k != "items"}
    with pytest.raises(ValidationError) as err:
        model.model_validate_json(json.dumps(missing))
    assert [e["loc"] for e in err.value.errors()] == [("items",)]


def test_generated_json_schema_carries_types_rules_and_roles(returns) -> None:
    schema = request_model(returns).model_json_schema()
    props = schema["properties"]
    assert schema["required"] == RETURNS["schema"]["request"]
    assert "example" not in schema  # no source folder: the page goes without one
    assert props["shopper"] == {
        "description": "Entity key, string.",
        "title": "Shopper",
        "type": "string",
    }
    assert props["order_id"]["description"] == "Unique id, string."
    assert props["basket_value"] == {
        "description": "Value, finite, >= 0 and <= 10000.",
        "maximum": 10_000,
        "minimum": 0,
        "title": "Basket Value",
        "type": "number",
    }
    assert (props["items"]["minimum"], props["items"]["maximum"]) == (1, 50)
    assert all(type(props["items"][k]) is int for k in ("minimum", "maximum"))
    assert props["items"]["description"] == "Value, int64 >= 1 and <= 50."
    assert props["channel"]["enum"] == ["web", "app"]
    assert props["channel"]["description"] == "Extra column, string."
    assert props["ordered_at"]["format"] == "date-time"
    assert props["ordered_at"]["description"].startswith("Event time, ISO 8601")


def test_openapi_example_is_the_first_event_of_the_source(
    tmp_path: Path, returns, monkeypatch
) -> None:
    day = pd.DataFrame(
        {
            "order_id": ["o-2", "o-1", "o-0"],
            "ordered_at": pd.to_datetime(
                ["2025-01-01 10:00", "2025-01-01 08:00", "2025-01-01 08:00"]
            ),
            "shopper": ["s-1", "s-2", "s-3"],
            "seller": ["acme"] * 3,
            "basket_value": [5.0, 7.5, 1.0],
            "items": [1, 3, 2],
            "channel": ["web", "app", "web"],
            "returned": [0, 1, 0],
        }
    )
    day.to_parquet(tmp_path / "2025-01-01.parquet")
    monkeypatch.setenv("RETURNS_SOURCE_DIR", str(tmp_path))
    schema = request_model(returns).model_json_schema()
    assert schema["example"] == {
        "order_id": "o-0",  # earliest time, then the smallest id
        "ordered_at": "2025-01-01T08:00:00",
        "shopper": "s-3",
        "seller": "acme",
        "basket_value": 1.0,
        "items": 2,
        "channel": "web",
    }


def test_answer_and_feature_vector_are_keyed_by_the_event_id(returns) -> None:
    answer = prediction_model(returns).model_validate(
        {
            "order_id": "o-1",
            "returns_probability": 0.7,
            "is_returns": True,
            "threshold": 0.5,
            "model_name": "returns_model",
            "model_version": "3",
        }
    )
    assert answer.model_dump()["order_id"] == "o-1"
    with pytest.raises(ValidationError, match="order_id"):
        prediction_model(returns).model_validate({**answer.model_dump(), "order_id": None})
    fv = feature_vector_model(returns)
    assert list(fv.model_fields) == ["order_id", "ordered_at", "feature_version", "features"]
    assert fv.model_fields["order_id"].annotation is str


def test_a_regression_answer_is_the_predicted_value_and_its_flag(tmp_path: Path) -> None:
    data = json.loads(json.dumps(RETURNS))
    data["label"]["task"] = "regression"
    data["task"] = {
        "candidates": ["linear_regression"],
        "primary_metric": {"name": "mean_absolute_error", "direction": "minimize"},
        "decision": {"kind": "value_and_flag", "flag": "late", "above": 1.0},
    }
    uc = write_returns(tmp_path, data)
    model = prediction_model(uc)
    label = uc.spec.label.column
    assert list(model.model_fields) == [
        "order_id",
        f"predicted_{label}",
        "late",
        "threshold",
        "model_name",
        "model_version",
    ]
    assert "> threshold" in model.model_fields["threshold"].description
    with pytest.raises(ValidationError, match="late"):
        model.model_validate({"order_id": "o", f"predicted_{label}": 2.0, "threshold": 1.0})
    assert "order_id" in request_model(uc).model_fields  # the request needs no answer


def test_prediction_log_of_a_string_keyed_use_case_round_trips(tmp_path: Path, returns) -> None:
    layout = log_layout(returns)
    model = ScoringModel(
        name="returns_model",
        version="1",
        threshold=0.5,
        predict_proba=lambda x: 1 / (1 + np.exp(-x[:, 1])),
        feature_version="v1",
    )
    record = request_model(returns).model_validate_json(json.dumps(GOOD)).as_record()
    x = np.array([0.0, 2.0])
    score = float(model.score(x)[0])
    path = tmp_path / "log.sqlite"
    writer = PredictionLogWriter(path, returns.feature_names, flush_seconds=0.01, layout=layout)
    writer.submit(LogEntry(time.time(), None, "/predict", record, x, score, model, 1.5))
    assert writer.flush()
    writer.close()
    with sqlite3.connect(path) as con:
        types = {row[1]: row[2] for row in con.execute(f"PRAGMA table_info({TABLE})")}
    assert [types[c] for c in RETURNS["schema"]["request"]] == [
        "TEXT",
        "TEXT",
        "TEXT",
        "TEXT",
        "REAL",
        "INTEGER",
        "TEXT",
    ]
    log = read_prediction_log(path, layout=layout)
    row = log.iloc[0]
    assert row["order_id"] == "o-17" and row["shopper"] == "s-3" and row["channel"] == "app"
    assert row["ordered_at"] == pd.Timestamp("2025-01-01 08:30")
    assert row["items"] == 2 and row["basket_value"] == 0.0
    assert row["shopper_orders_7day"] == 2.0
    assert row["score"] == pytest.approx(1 / (1 + math.exp(-2))) and row["is_returns"] is np.True_
    empty = read_prediction_log(tmp_path / "absent.sqlite", layout=layout)
    assert list(empty.columns) == list(log.columns)


# --- fraud: the generated models are today's -----------------------------------------------------

#: ``Transaction.model_json_schema()`` of the hand-written model the generated one replaces.
TODAYS_TRANSACTION = {
    "description": "One card transaction to score: the raw contract without the label.",
    "example": {
        "customer_id": 12,
        "terminal_id": 345,
        "transaction_id": 1,
        "tx_amount": 57.3,
        "tx_datetime": "2025-05-15T12:30:00",
    },
    "properties": {
        "transaction_id": {
            "description": "Unique id, int64 >= 0.",
            "maximum": INT64_MAX,
            "minimum": 0,
            "title": "Transaction Id",
            "type": "integer",
        },
        "tx_datetime": {
            "description": "ISO 8601 date and time; aware -> naive UTC.",
            "format": "date-time",
            "title": "Tx Datetime",
            "type": "string",
        },
        "customer_id": {
            "description": "Customer (card) id, >= 0.",
            "maximum": INT64_MAX,
            "minimum": 0,
            "title": "Customer Id",
            "type": "integer",
        },
        "terminal_id": {
            "description": "Terminal id, >= 0.",
            "maximum": INT64_MAX,
            "minimum": 0,
            "title": "Terminal Id",
            "type": "integer",
        },
        "tx_amount": {
            "description": "Amount, finite, >= 0.",
            "minimum": 0,
            "title": "Tx Amount",
            "type": "number",
        },
    },
    "required": ["transaction_id", "tx_datetime", "customer_id", "terminal_id", "tx_amount"],
    "title": "Transaction",
    "type": "object",
}
TODAYS_PREDICTION = {
    "properties": {
        "transaction_id": {"title": "Transaction Id", "type": "integer"},
        "fraud_probability": {"title": "Fraud Probability", "type": "number"},
        "is_fraud": {"title": "Is Fraud", "type": "boolean"},
        "threshold": {"title": "Threshold", "type": "number"},
        "model_name": {"title": "Model Name", "type": "string"},
        "model_version": {"title": "Model Version", "type": "string"},
    },
    "required": [
        "transaction_id",
        "fraud_probability",
        "is_fraud",
        "threshold",
        "model_name",
        "model_version",
    ],
    "title": "Prediction",
    "type": "object",
}
TODAYS_FEATURE_VECTOR = {
    "properties": {
        "transaction_id": {"title": "Transaction Id", "type": "integer"},
        "tx_datetime": {"format": "date-time", "title": "Tx Datetime", "type": "string"},
        "feature_version": {"title": "Feature Version", "type": "string"},
        "features": {
            "additionalProperties": {"type": "number"},
            "title": "Features",
            "type": "object",
        },
    },
    "required": ["transaction_id", "tx_datetime", "feature_version", "features"],
    "title": "FeatureVector",
    "type": "object",
}
#: The prediction log's table as it was written by hand: existing files have it.
TODAYS_LOG_SQL = f"""
CREATE TABLE {TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT, logged_at TEXT NOT NULL, request_id TEXT NOT NULL,
    role TEXT NOT NULL, endpoint TEXT NOT NULL, transaction_id INTEGER NOT NULL,
    tx_datetime TEXT NOT NULL, customer_id INTEGER NOT NULL, terminal_id INTEGER NOT NULL,
    tx_amount REAL NOT NULL, features TEXT NOT NULL, feature_version TEXT,
    score REAL NOT NULL, is_fraud INTEGER NOT NULL, threshold REAL NOT NULL,
    model_name TEXT NOT NULL, model_version TEXT NOT NULL, latency_ms REAL NOT NULL
);
CREATE INDEX {TABLE}_logged_at ON {TABLE} (logged_at);
CREATE INDEX {TABLE}_tx ON {TABLE} (transaction_id);
"""


def _without_descriptions(node: Any) -> Any:
    """The schema minus its prose (descriptions are derived from roles) and its example."""
    if isinstance(node, dict):
        return {
            k: _without_descriptions(v)
            for k, v in node.items()
            if k not in ("description", "example")
        }
    return node


@pytest.mark.parametrize(
    ("model", "today"),
    [
        (schemas.Transaction, TODAYS_TRANSACTION),
        (schemas.Prediction, TODAYS_PREDICTION),
        (schemas.FeatureVector, TODAYS_FEATURE_VECTOR),
    ],
)
def test_fraud_models_have_todays_json_schema(model: type[BaseModel], today: dict) -> None:
    generated = model.model_json_schema()
    assert _without_descriptions(generated) == _without_descriptions(today)
    assert list(generated["properties"]) == list(today["properties"])


def test_fraud_request_describes_roles_and_shows_a_real_event() -> None:
    fraud = served_use_case()
    assert fraud.name == "fraud"
    props = schemas.Transaction.model_json_schema()["properties"]
    described = {name: p["description"] for name, p in props.items()}
    assert described == {
        "transaction_id": "Unique id, int64 >= 0.",
        "tx_datetime": "Event time, ISO 8601 date and time; aware -> naive UTC.",
        "customer_id": "Entity key, int64 >= 0.",
        "terminal_id": "Entity key, int64 >= 0.",
        "tx_amount": "Value, finite, >= 0.",
    }
    example = schemas.Transaction.model_json_schema()["example"]
    assert example == example_request(fraud)
    assert date.fromisoformat(example["tx_datetime"][:10]) == fraud.spec.settings.start_date
    schemas.Transaction.model_validate_json(json.dumps(example))  # the example is valid


def test_fraud_log_has_todays_columns_and_reads_an_existing_file(tmp_path: Path) -> None:
    """A log written with the hand-written table reads as before and takes new rows."""
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript(TODAYS_LOG_SQL)
        con.execute(
            f"INSERT INTO {TABLE} VALUES (NULL, '2025-05-15T10:00:00.000000', 'r1', 'champion',"
            " '/predict', 7, '2025-05-15T09:59:00', 3, 9, 12.5, '{\"tx_amount\": 12.5}', 'v',"
            " 0.9, 1, 0.5, 'fraud_detector', '2', 1.0)"
        )
        old = [row[1:4] for row in con.execute(f"PRAGMA table_info({TABLE})")]
    fresh = tmp_path / "new.sqlite"
    PredictionLogWriter(fresh, served_use_case().feature_names).close()
    with sqlite3.connect(fresh) as con:
        assert [row[1:4] for row in con.execute(f"PRAGMA table_info({TABLE})")] == old
        indexes = {row[1] for row in con.execute(f"PRAGMA index_list({TABLE})")}
    assert indexes == {f"{TABLE}_logged_at", f"{TABLE}_tx"}
    log = read_prediction_log(path, expand_features=False)
    assert log[["transaction_id", "customer_id", "terminal_id"]].iloc[0].tolist() == [7, 3, 9]
    assert log["tx_datetime"].iloc[0] == pd.Timestamp("2025-05-15 09:59")
    assert log["is_fraud"].iloc[0] is np.True_
    assert served_layout().features == tuple(served_use_case().feature_names)
    empty = read_prediction_log(tmp_path / "absent.sqlite")
    assert set(served_layout().features) <= set(empty.columns)
