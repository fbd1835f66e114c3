"""Use-case declarations: fraud loads and equals today's platform; mistakes fail at load.

Every broken definition is a real folder written into ``tmp_path`` (a copy of the fraud
declaration with one mistake), loaded by the real loader.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tokenize
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from ml_platform.cli import main
from ml_platform.data import contract
from ml_platform.data.simulator import generate_day
from ml_platform.data.validation import rule_masks
from ml_platform.features.definitions import FEATURES, feature_set
from ml_platform.settings import Settings
from ml_platform.use_cases import (
    UseCaseError,
    get_use_case,
    load_use_case,
    load_use_cases,
    resolve_settings,
)
from ml_platform.use_cases.derive import CATALOG_KEYS, example_request, quarantine_reasons
from ml_platform.use_cases.feature_port import to_feature_defs, to_feature_set
from ml_platform.use_cases.loader import PACKAGE_ROOT, USE_CASE_FILE, source_kind

FRAUD_DIR = PACKAGE_ROOT / "fraud"

Mutation = Callable[[dict[str, Any]], None]


def _fraud_yaml() -> dict[str, Any]:
    return yaml.safe_load((FRAUD_DIR / USE_CASE_FILE).read_text())


def write_case(root: Path, name: str = "fraud", mutate: Mutation | None = None) -> Path:
    """A copy of the fraud folder under ``root/name``, renamed and with ``mutate`` applied."""
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(FRAUD_DIR / "source.py", folder / "source.py")
    data = _fraud_yaml()
    if name != "fraud":
        data.update(name=name, model_name=f"{name}_model")
        data["settings"]["env_prefix"] = f"{name.upper()}_"
    if mutate is not None:
        mutate(data)
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def _feature(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in data["features"] if f["name"] == name)


def _set(path: str, value: Any) -> Mutation:
    """Set ``a.b.c`` (or the feature named after ``features:``) to ``value``."""

    def mutate(data: dict[str, Any]) -> None:
        if path.startswith("features:"):
            name, _, key = path.removeprefix("features:").partition(".")
            node, last = _feature(data, name), key
        else:
            *parents, last = path.split(".")
            node = data
            for p in parents:
                node = node[p]
        if value is None:
            node.pop(last)
        else:
            node[last] = value

    return mutate


@pytest.fixture(scope="module")
def fraud():
    return load_use_case(FRAUD_DIR)


# --- fraud, as declared -------------------------------------------------------------------------


def test_fraud_loads_with_its_identity(fraud) -> None:
    assert fraud.name == "fraud"
    assert fraud.task == "binary"
    assert fraud.entities == {"customer_id": "int", "terminal_id": "int"}
    assert fraud.model_name == "fraud_detector"
    assert fraud.service == "ml_platform.serving.service:FraudDetector"
    assert fraud.env_prefix == "FRAUD_"
    assert len(fraud.features) == 30
    assert fraud.qualified("validated_transactions") == "fraud_validated_transactions"
    assert fraud.spec.label.delay_days == 7
    assert fraud.spec.task.primary_metric.name == "average_precision"
    assert fraud.spec.task.primary_metric.direction == "maximize"


def test_fraud_declaration_translates_to_todays_features_exactly(fraud) -> None:
    """The proof that porting the engines to declarations will be bit-identical."""
    assert to_feature_defs(fraud) == FEATURES


def test_fraud_quarantine_reasons_are_todays_validation_rules(fraud) -> None:
    empty = pd.DataFrame({col: pd.Series([], dtype=t) for col, t in contract.RAW_COLUMNS.items()})
    masks, _ = rule_masks(empty, "2025-04-01")
    today = [*masks, f"{contract.TRANSACTION_ID}: duplicate"]
    assert quarantine_reasons(fraud) == today


def test_fraud_settings_are_todays_defaults(fraud) -> None:
    s = resolve_settings(fraud, environ={})
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    renamed = {
        "baseline_margin": "baseline_margin_ap",
        "promotion_margin": "promotion_margin_ap",
        "gate_min": "gate_min_auc",
    }
    shared = [
        "start_date",
        "end_date",
        "label_delay_days",
        "quarantine_max_share",
        "train_days",
        "valid_days",
        "drift_share_threshold",
        "retrain_performance_margin",
        "retrain_min_new_labeled_days",
        "retrain_min_days_between",
        "performance_window_days",
        "skew_tolerance",
        *renamed,
    ]
    for field in shared:
        assert getattr(s, field) == defaults[renamed.get(field, field)], field
    assert s.params == {
        "sim_seed": defaults["sim_seed"],
        "sim_n_customers": defaults["sim_n_customers"],
        "sim_n_terminals": defaults["sim_n_terminals"],
    }
    assert fraud.spec.task.gate_metric == "roc_auc"


def _add_feature(feature: dict[str, Any]) -> Mutation:
    return lambda data: data["features"].append(feature)


def _weather_join(data: dict[str, Any]) -> None:
    data["schema"]["side_tables"] = {
        "weather": {"keys": {"terminal_id": "int"}, "time": "hour", "columns": {"temp": "float"}}
    }
    data["features"].append(
        {
            "kind": "asof",
            "name": "terminal_temp",
            "table": "weather",
            "column": "temp",
            "join": {"terminal_id": "terminal_id"},
            "max_age": "3h",
        }
    )


UNPORTABLE = {
    "another night": (
        _set("features:tx_during_night.last_hour", 5),
        "feature tx_during_night: today's engines use last_hour 6",
    ),
    "a value's sum": (
        _add_feature(
            {
                "kind": "window",
                "name": "spent",
                "entity": "customer_id",
                "function": "sum",
                "of": "tx_amount",
                "window": "1d",
            }
        ),
        "feature spent: today's engines cannot compute sum",
    ),
    "an extra value column": (
        _set("schema.values", {"tx_amount": "float", "fee": "float"}),
        None,  # the contract plus a column no feature reads: translates unchanged
    ),
}

#: declared feature -> the engines' definition it must translate to (name, aggregate, roles)
PORTED = {
    "hour of day": (
        _add_feature({"kind": "row", "name": "hour", "function": "hour_of_day"}),
        ("hour", "hour", None, None, None),
    ),
    "day of week": (
        _add_feature({"kind": "row", "name": "dow", "function": "day_of_week"}),
        ("dow", "weekday", None, None, None),
    ),
    "a value's maximum": (
        _add_feature(
            {
                "kind": "window",
                "name": "top",
                "entity": "customer_id",
                "function": "max",
                "of": "tx_amount",
                "window": "1d",
            }
        ),
        ("top", "max", "customer_id", "tx_amount", None),
    ),
    "the label's minimum": (
        _add_feature(
            {
                "kind": "window",
                "name": "all_fraud",
                "entity": "customer_id",
                "function": "min",
                "of": "tx_fraud",
                "window": "1d",
                "matured": True,
            }
        ),
        ("all_fraud", "min", "customer_id", None, "tx_fraud"),
    ),
    "a side-table join": (_weather_join, ("terminal_temp", "asof", None, "temp", None)),
}


@pytest.mark.parametrize("case", list(PORTED))
def test_translation_maps_each_function_to_its_aggregate(tmp_path: Path, case: str) -> None:
    """Each declared function becomes the engines' aggregate of that meaning, on its columns."""
    mutate, (name, aggregate, entity, value, label) = PORTED[case]
    uc = load_use_case(write_case(tmp_path, mutate=mutate))
    defs = to_feature_defs(uc)
    assert defs[: len(FEATURES)] == FEATURES
    f = defs[-1]
    assert (f.name, f.aggregate, f.entity, f.value, f.label) == (
        name,
        aggregate,
        entity,
        value,
        label,
    )


def test_translation_of_an_asof_join_keeps_table_keys_age_and_default(tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        _weather_join(data)
        data["schema"]["side_tables"]["weather"]["known_after"] = "1h"
        data["features"][-1]["default"] = -1.5

    fs = to_feature_set(load_use_case(write_case(tmp_path, mutate=mutate)))
    f = fs.features[-1]
    assert (f.table, f.join, f.window_ns, f.default) == (
        "weather",
        (("terminal_id", "terminal_id"),),
        3 * 3600 * 10**9,
        -1.5,
    )
    (table,) = fs.side_tables
    assert (table.name, table.keys, table.time, table.columns, table.known_after_ns) == (
        "weather",
        (("terminal_id", "int"),),
        "hour",
        ("temp",),
        3600 * 10**9,
    )
    assert fs.side_horizon_ns("weather") == 4 * 3600 * 10**9
    assert fs.horizon_ns(7) == feature_set("fraud").horizon_ns(7)  # joins reach no event state


@pytest.mark.parametrize("case", list(UNPORTABLE))
def test_translation_refuses_what_todays_engines_cannot_compute(tmp_path: Path, case: str) -> None:
    """Translated exactly or not at all: never an approximation of a declared feature."""
    mutate, expected = UNPORTABLE[case]
    uc = load_use_case(write_case(tmp_path, mutate=mutate))
    if expected is None:
        assert to_feature_defs(uc) == FEATURES
        return
    with pytest.raises(UseCaseError) as info:
        to_feature_defs(uc)
    assert str(info.value).startswith(f"{uc.file}: {expected}"), str(info.value)


def test_translation_keeps_sub_day_windows_and_renamed_values(tmp_path: Path) -> None:
    """A window in hours keeps its exact length in ns; a value feature may be named freely."""

    def mutate(data: dict[str, Any]) -> None:
        _set("features:customer_id_seconds_since_prev_tx.window", "36h")(data)
        _set("features:tx_amount.name", "amount")(data)

    uc = load_use_case(write_case(tmp_path, mutate=mutate))
    got = {f.name: f for f in to_feature_defs(uc)}
    assert got["customer_id_seconds_since_prev_tx"].window_ns == 36 * 3600 * 10**9
    assert got["amount"].aggregate == "value" and got["amount"].value == contract.TX_AMOUNT
    assert len(got) == len(FEATURES)


# --- bad definitions fail at load: file, field path, reason ----------------------------------


BAD = {
    "unknown column": (
        _set("features:customer_id_avg_amount_{n}{unit}_window.of", "tx_amout"),
        "features[4] (customer_id_avg_amount_{n}{unit}_window).of: unknown column 'tx_amout'",
    ),
    "unknown entity": (
        _set("features:customer_id_risk_7day_window.entity", "card_id"),
        "features[9] (customer_id_risk_7day_window).entity: unknown entity 'card_id'",
    ),
    "unknown rule column": (
        lambda d: d["schema"]["rules"].append({"column": "amount", "check": "finite"}),
        "schema.rules[5].column: unknown column 'amount'",
    ),
    "label aggregation without a delay": (
        _set("features:terminal_id_risk_60day_window.matured", False),
        "features[13] (terminal_id_risk_60day_window).matured: reads the label 'tx_fraud'",
    ),
    "label-only function without a delay": (
        _set("features:terminal_id_days_since_fraud.matured", None),
        "features[15] (terminal_id_days_since_fraud).matured: reads the label",
    ),
    "label without its availability": (
        _set("label.delay_days", None),
        "label: say when the label is known",
    ),
    "zero window": (
        _set("features:customer_id_risk_30day_window.window", "0d"),
        "features[10] (customer_id_risk_30day_window).window: '0d': a window must be longer",
    ),
    "negative window": (
        _set("features:customer_id_risk_30day_window.window", "-2h"),
        "features[10] (customer_id_risk_30day_window).window: '-2h': a window must be longer",
    ),
    "window finer than the engines' unit": (
        _set("features:customer_id_risk_30day_window.window", "90s"),
        "features[10] (customer_id_risk_30day_window).window: '90s': not a multiple of",
    ),
    "window beyond the horizon": (
        _set("features:customer_id_risk_30day_window.window", "500d"),
        "features[10] (customer_id_risk_30day_window).window: '500d': longer than the 400-day",
    ),
    "window plus delay just beyond the horizon": (
        _set("features:customer_id_risk_30day_window.window", "394d"),
        "features[10] (customer_id_risk_30day_window).window: 394d plus the 7-day label delay "
        "looks back 401 days",
    ),
    "window just beyond the horizon": (
        _set("features:customer_id_seconds_since_prev_tx.window", "401d"),
        "features[8] (customer_id_seconds_since_prev_tx).window: '401d': longer than the",
    ),
    "not a duration": (
        _set("features:customer_id_risk_30day_window.window", "monthly"),
        "features[10] (customer_id_risk_30day_window).window: 'monthly' is not a duration",
    ),
    "one window of a list wrong": (
        _set("features:terminal_id_nb_tx_{n}{unit}_window.windows", ["1d", "7x"]),
        "features[5] (terminal_id_nb_tx_{n}{unit}_window).windows[1]: '7x': unknown unit 'x'",
    ),
    "request field the schema lacks": (
        lambda d: d["schema"]["request"].append("merchant_id"),
        "schema.request[5]: the schema lacks 'merchant_id'",
    ),
    "label in the request": (
        lambda d: d["schema"]["request"].append("tx_fraud"),
        "schema.request[5]: 'tx_fraud' is the label",
    ),
    "request without an entity": (
        lambda d: d["schema"]["request"].remove("terminal_id"),
        "schema.request: must carry 'terminal_id'",
    ),
    "feature name twice": (
        _set("features:customer_id_risk_30day_window.name", "customer_id_risk_7day_window"),
        "features[10] (customer_id_risk_7day_window).name: 'customer_id_risk_7day_window' is "
        "already the name of features[9]",
    ),
    "wrong metric direction": (
        _set("task.primary_metric.direction", "minimize"),
        "task.primary_metric.direction: average_precision is to maximize",
    ),
    "metric of the other task": (
        _set("task.primary_metric.name", "mean_absolute_error"),
        "task.primary_metric.name: unknown binary metric 'mean_absolute_error'",
    ),
    "no linear baseline": (
        _set("task.candidates", ["lightgbm"]),
        "task.candidates: the linear baseline logistic_regression is always a candidate",
    ),
    "typo in a key": (
        _set("features:tx_amount.descripton", "x"),
        "features[0] (tx_amount).descripton: Extra inputs are not permitted",
    ),
    "unknown function": (
        _set("features:tx_during_weekend.function", "is_holiday"),
        "features[1] (tx_during_weekend).function: Input should be 'value'",
    ),
    "missing simulator file": (
        _set("source.simulator", "sim.py:simulate_day"),
        "source.simulator: no file sim.py in",
    ),
    "model name without the use case's prefix": (
        _set("model_name", "detector"),
        "model_name: must start with the use case's name (fraud_)",
    ),
    "value of a field the request lacks": (
        lambda d: d["schema"]["request"].remove("tx_amount"),
        "features[0] (tx_amount).of: 'tx_amount' is not a request field",
    ),
    "value without its column": (
        _set("features:tx_amount.of", None),
        "features[0] (tx_amount).of: value needs the column it passes on",
    ),
    "calendar flag with a column": (
        _set("features:tx_during_weekend.of", "tx_amount"),
        "features[1] (tx_during_weekend).of: is_weekend reads the event time",
    ),
    "is_night without its hour": (
        _set("features:tx_during_night.last_hour", None),
        "features[2] (tx_during_night).last_hour: required by is_night",
    ),
    "input to a function without one": (
        _set("features:customer_id_seconds_since_prev_tx.of", "tx_amount"),
        "(customer_id_seconds_since_prev_tx).of: seconds_since_previous takes no input column",
    ),
    "aggregation without its input": (
        _set("features:customer_id_avg_amount_{n}{unit}_window.of", None),
        "features[4] (customer_id_avg_amount_{n}{unit}_window).of: mean needs the column",
    ),
    "value function over the label": (
        _set("features:customer_id_amount_ratio_30day_window.of", "tx_fraud"),
        "ratio_to_mean aggregates a value column, not the label",
    ),
    "window and windows": (
        _set("features:customer_id_risk_7day_window.windows", ["1d"]),
        "features[9] (customer_id_risk_7day_window): give exactly one of window and windows",
    ),
    "windows without a name template": (
        _set("features:customer_id_nb_tx_{n}{unit}_window.name", "customer_nb_tx"),
        "features[3] (customer_nb_tx).name: with several windows the name needs {n}",
    ),
    "feature name not an identifier": (
        _set("features:tx_amount.name", "Tx Amount"),
        "features[0] (Tx Amount).name: 'Tx Amount': use lower-case letters",
    ),
    "expanded name not an identifier": (
        _set("features:customer_id_nb_tx_{n}{unit}_window.name", "Customer_{n}"),
        "features[3] (Customer_{n}).name: 'Customer_1': use lower-case letters",
    ),
    "column declared twice": (
        _set("schema.values", {"tx_amount": "float", "customer_id": "float"}),
        "schema.values.customer_id: column 'customer_id' is already declared as "
        "schema.entities.customer_id",
    ),
    "derived id from an unknown column": (
        _set("schema.event_id.derive_from", ["merchant"]),
        "schema.event_id.derive_from[0]: unknown column 'merchant'",
    ),
    "numeric rule on a time": (
        lambda d: d["schema"]["rules"].append({"column": "tx_datetime", "check": "finite"}),
        "schema.rules[5].check: finite needs a numeric column, tx_datetime is datetime",
    ),
    "range without bounds": (
        lambda d: d["schema"]["rules"].append({"column": "tx_amount", "check": "range"}),
        "schema.rules[5]: range needs min, max or both",
    ),
    "one_of without values": (
        lambda d: d["schema"]["rules"].append({"column": "terminal_id", "check": "one_of"}),
        "schema.rules[5].values: one_of needs the allowed values",
    ),
    "label known twice": (
        _set("label.known_at", "tx_datetime"),
        "label: say when the label is known",
    ),
    "label time not a declared datetime": (
        lambda d: d["label"].update(delay_days=None, known_at="tx_datetime"),
        "label.known_at: 'tx_datetime' must be declared in schema.extras as datetime",
    ),
    "positive-label function on a regression label": (
        _set("label.task", "regression"),
        "features[15] (terminal_id_days_since_fraud).function: days_since_last_positive "
        "needs a binary label",
    ),
    "candidate of the other task": (
        _set("task.candidates", ["logistic_regression", "linear_regression", "lightgbm"]),
        "task.candidates[1]: linear_regression does not fit a binary label",
    ),
    "unknown extra metric": (
        _set("task.extra_metrics", ["accuracy"]),
        "task.extra_metrics[0]: unknown binary metric 'accuracy'",
    ),
    "unknown metric function": (
        _set("task.extra_metrics", [{"name": "cp", "function": "top_k"}]),
        "task.extra_metrics[0].function: unknown binary metric function 'top_k'",
    ),
    "metric function without k": (
        _set(
            "task.extra_metrics",
            [{"name": "cp", "function": "entity_precision_at_k", "entity": "customer_id"}],
        ),
        "task.extra_metrics[0]: entity_precision_at_k needs entity (one of the entities) and k",
    ),
    "gate metric without its floor": (
        _set("settings.gate_min", None),
        "task.gate_metric: give it together with settings.gate_min",
    ),
    "unknown gate metric": (
        _set("task.gate_metric", "auc"),
        "task.gate_metric: unknown binary metric 'auc'",
    ),
    "decision of the other task": (
        _set("task.decision", {"kind": "value_and_flag", "flag": "late", "above": 15}),
        "task.decision.kind: a binary task decides by threshold",
    ),
    "threshold with a flag": (
        _set("task.decision", {"kind": "threshold", "flag": "late"}),
        "task.decision: threshold takes no flag or above",
    ),
    "service as a file": (
        _set("service", "service.py:Detector"),
        "service: a BentoML target is module:Class, not a file",
    ),
    "reference without a function": (
        _set("source.simulator", "simulate_day"),
        "source.simulator: 'simulate_day': expected 'file.py:function'",
    ),
    "default source without its function": (
        _set("source.simulator", None),
        "source.simulator: the default source needs its function",
    ),
    "range ending before it starts": (
        _set("settings.end_date", "2025-01-01"),
        "settings.end_date: 2025-01-01 is before start_date 2025-04-01",
    ),
    "lower-case env prefix": (
        _set("settings.env_prefix", "fraud_"),
        "settings.env_prefix: 'fraud_' must be upper case, end with _ and not be ML_PLATFORM_",
    ),
    "the platform's env prefix": (
        _set("settings.env_prefix", "ML_PLATFORM_"),
        "settings.env_prefix: 'ML_PLATFORM_' must be upper case",
    ),
    "a parameter shadowing a setting": (
        lambda d: d["settings"]["params"].update(train_days=3),
        "settings.params.train_days: a setting of its own, not a parameter",
    ),
    "setting out of range": (
        _set("settings.train_days", 0),
        "settings.train_days: Input should be greater than or equal to 1",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_definition_names_file_field_and_reason(tmp_path: Path, case: str) -> None:
    mutate, expected = BAD[case]
    folder = write_case(tmp_path, mutate=mutate)
    with pytest.raises(UseCaseError) as info:
        load_use_case(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / USE_CASE_FILE}: "), message
    assert expected in message, message


def _flights_yaml() -> dict[str, Any]:
    doc = (PACKAGE_ROOT.parent.parent / "docs" / "USE_CASES.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    return yaml.safe_load(next(b for b in blocks if b.startswith("name: flights")))


def write_flights(root: Path, mutate: Mutation | None = None) -> Path:
    """The design document's flights declaration as a folder (its source file empty)."""
    folder = root / "flights"
    folder.mkdir(parents=True)
    data = _flights_yaml()
    if mutate is not None:
        mutate(data)
    (folder / USE_CASE_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
    (folder / "source.py").write_text("")
    return folder


BAD_FLIGHTS = {
    "unknown side table": (
        _set("features:origin_wind_speed.table", "metar"),
        "features[8] (origin_wind_speed).table: unknown side table 'metar' (declared: weather)",
    ),
    "unknown side-table column": (
        _set("features:origin_wind_speed.column", "gust"),
        "features[8] (origin_wind_speed).column: weather has no column 'gust'",
    ),
    "unknown join key": (
        _set("features:origin_wind_speed.join", {"origin": "airport"}),
        "features[8] (origin_wind_speed).join.origin: weather has no key 'airport'",
    ),
    "a side-table key left unjoined": (
        _set("features:origin_wind_speed.join", {"origin": "airport"}),
        "features[8] (origin_wind_speed).join: every key of weather must be joined (origin)",
    ),
    "join from a field the request lacks": (
        _set("features:origin_wind_speed.join", {"dep_at": "origin"}),
        "features[8] (origin_wind_speed).join.dep_at: not a request field",
    ),
    "side-table time that is also a column": (
        _set("schema.side_tables.weather.time", "temp"),
        "schema.side_tables.weather.time: 'temp' is also a key/column",
    ),
    "label time not declared": (
        _set("label.known_at", "arr_at"),
        "label.known_at: 'arr_at' must be declared in schema.extras as datetime",
    ),
    "flag without its bound": (
        _set("task.decision", {"kind": "value_and_flag", "flag": "late"}),
        "task.decision: value_and_flag needs flag and above",
    ),
    "per-row label read without maturity": (
        _set("features:origin_mean_delay_{n}{unit}.matured", False),
        "features[3] (origin_mean_delay_{n}{unit}).matured: reads the label 'dep_delay'",
    ),
    "label time in the request": (
        lambda d: d["schema"]["request"].append("dep_at"),
        "schema.request[8]: 'dep_at' is the label, not known at request time",
    ),
    "request without a column of the derived id": (
        lambda d: d["schema"]["request"].remove("sched_dep_at"),
        "schema.request: must carry 'sched_dep_at' (the engines key events by it)",
    ),
    "no linear regression baseline": (
        _set("task.candidates", ["logistic_regression", "lightgbm"]),
        "task.candidates: the linear baseline linear_regression is always a candidate",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FLIGHTS))
def test_bad_flights_definition_names_file_field_and_reason(tmp_path: Path, case: str) -> None:
    mutate, expected = BAD_FLIGHTS[case]
    folder = write_flights(tmp_path, mutate)
    with pytest.raises(UseCaseError) as info:
        load_use_case(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / USE_CASE_FILE}: "), message
    assert expected in message, message


def test_unreadable_declarations_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    with pytest.raises(UseCaseError, match=r"broken/use_case.yaml: no such file"):
        load_use_case(folder)
    (folder / USE_CASE_FILE).write_text("name: [unclosed")
    unclosed = r"broken/use_case.yaml: line 1, column 16: not valid YAML: expected ','"
    with pytest.raises(UseCaseError, match=unclosed):
        load_use_case(folder)
    (folder / USE_CASE_FILE).write_text("name: a\nservice: m:C\nname: b\n")
    twice = r"use_case.yaml: line 3, column 1: not valid YAML: key 'name' given twice"
    with pytest.raises(UseCaseError, match=twice):
        load_use_case(folder)
    (folder / USE_CASE_FILE).write_text("- just a list")
    with pytest.raises(UseCaseError, match=r"use_case.yaml: \(top level\): expected a mapping"):
        load_use_case(folder)


def test_windows_up_to_the_horizon_load(tmp_path: Path) -> None:
    def longest(data: dict[str, Any]) -> None:
        _feature(data, "customer_id_risk_30day_window")["window"] = "393d"  # + 7 = 400
        _feature(data, "customer_id_seconds_since_prev_tx")["window"] = "400d"
        _feature(data, "customer_id_risk_7day_window")["window"] = "1min"

    uc = load_use_case(write_case(tmp_path, mutate=longest))
    windows = {f.name: f.window for f in uc.features if f.kind == "window"}
    assert windows["customer_id_risk_30day_window"] == "393d"
    assert windows["customer_id_risk_7day_window"] == "1min"


def test_all_mistakes_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    def two(data: dict[str, Any]) -> None:
        data["schema"]["request"].append("merchant_id")
        _feature(data, "terminal_id_risk_60day_window")["matured"] = False

    with pytest.raises(UseCaseError, match="2 problems") as info:
        load_use_case(write_case(tmp_path, mutate=two))
    assert "merchant_id" in str(info.value)
    assert "terminal_id_risk_60day_window" in str(info.value)


def test_folder_and_declared_name_must_agree(tmp_path: Path) -> None:
    folder = write_case(tmp_path, "churn", mutate=_set("name", "fraud"))
    with pytest.raises(UseCaseError, match="name: 'fraud' differs from its folder's name 'churn'"):
        load_use_case(folder)


def test_two_use_cases_with_one_name_fail(tmp_path: Path) -> None:
    write_case(tmp_path / "team")
    with pytest.raises(UseCaseError) as info:
        load_use_cases([PACKAGE_ROOT, tmp_path / "team"])
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'team' / 'fraud' / USE_CASE_FILE}: name: 'fraud'")
    assert str(FRAUD_DIR / USE_CASE_FILE) in message


@pytest.mark.parametrize("prefix", ["FRAUD_", "FRAUD_EU_"])
def test_two_use_cases_with_one_or_nested_env_prefixes_fail(tmp_path: Path, prefix: str) -> None:
    write_case(tmp_path, "churn", mutate=_set("settings.env_prefix", prefix))
    with pytest.raises(UseCaseError) as info:
        load_use_cases([PACKAGE_ROOT, tmp_path])
    assert str(info.value).startswith(
        f"{tmp_path / 'churn' / USE_CASE_FILE}: settings.env_prefix: {prefix!r} overlaps 'FRAUD_'"
    )


def test_two_use_cases_with_one_model_name_fail(tmp_path: Path) -> None:
    write_case(tmp_path, "churn", mutate=_set("model_name", "churn_eu_model"))
    write_case(tmp_path, "churn_eu", mutate=_set("model_name", "churn_eu_model"))
    with pytest.raises(UseCaseError, match="model_name: .churn_eu_model. is already used"):
        load_use_cases([tmp_path])


def test_the_documented_flights_declaration_is_the_shipped_one() -> None:
    shipped = yaml.safe_load((PACKAGE_ROOT / "flights" / USE_CASE_FILE).read_text())
    assert shipped == _flights_yaml()


def test_the_documented_flights_declaration_loads(tmp_path: Path) -> None:
    """The design's second use case is expressible: string keys, hour and minute windows,
    a per-row label time, an as-of weather join, a regression task."""
    uc = load_use_case(write_flights(tmp_path))
    assert uc.task == "regression"
    assert set(uc.entities.values()) == {"string"}
    assert "origin_mean_delay_3hour" in uc.feature_names
    assert "dest_flights_90minute" in uc.feature_names
    assert [f.kind for f in uc.features].count("asof") == 2
    assert resolve_settings(uc, environ={}).label_delay_days is None
    assert "distance: below 1" in quarantine_reasons(uc)
    fs = to_feature_set(uc)
    per_row = [f.name for f in fs.features if f.known_at == "dep_at"]
    assert per_row == [
        "origin_mean_delay_3hour",
        "origin_mean_delay_24hour",
        "carrier_mean_delay_7day",
        "tailnum_max_delay_24hour",
    ]
    assert fs.known_within_ns == 2 * 86_400 * 10**9
    assert fs.horizon_ns(7) == (7 + 2) * 86_400 * 10**9  # the 7-day window + known_within


# --- discovery ------------------------------------------------------------------------------------


def test_external_folders_come_from_the_setting(tmp_path: Path, settings_env) -> None:
    """A team's folder is found without touching the package: a parent or the folder itself."""
    write_case(tmp_path / "team", "churn")
    single = write_case(tmp_path, "alerts")
    settings_env(use_case_dirs=os.pathsep.join([str(tmp_path / "team"), "", str(single)]))
    cases = load_use_cases()
    assert list(cases) == ["flights", "fraud", "churn", "alerts"]  # the package's first
    assert cases["churn"].folder == tmp_path / "team" / "churn"
    assert get_use_case("alerts").model_name == "alerts_model"
    with pytest.raises(UseCaseError, match="use case 'nope': not found"):
        get_use_case("nope")


def test_missing_external_folder_names_the_setting(tmp_path: Path, settings_env) -> None:
    settings_env(use_case_dirs=str(tmp_path / "absent"))
    with pytest.raises(UseCaseError, match="ML_PLATFORM_USE_CASE_DIRS: .*absent: no such folder"):
        load_use_cases()


# --- settings: folder values, environment overrides ---------------------------------------------


def test_env_prefix_overrides_settings_when_resolved(fraud, monkeypatch) -> None:
    monkeypatch.setenv("FRAUD_LABEL_DELAY_DAYS", "3")
    monkeypatch.setenv("FRAUD_TRAIN_DAYS", "21")
    monkeypatch.setenv("FRAUD_START_DATE", "2025-05-01")
    monkeypatch.setenv("FRAUD_SIM_N_CUSTOMERS", "50")
    s = resolve_settings(fraud)
    assert (s.label_delay_days, s.train_days, s.start_date) == (3, 21, date(2025, 5, 1))
    assert s.params["sim_n_customers"] == 50
    assert s.valid_days == 7  # untouched
    monkeypatch.delenv("FRAUD_TRAIN_DAYS")
    assert resolve_settings(fraud).train_days == 14  # read when called, not at import


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FRAUD_LABEL_DELAY_DAYS": "0"}, "FRAUD_LABEL_DELAY_DAYS: Input should be greater"),
        ({"FRAUD_TRAIN_DAYS": "two"}, "FRAUD_TRAIN_DAYS: Input should be a valid integer"),
        ({"FRAUD_SIM_SEED": "x"}, "FRAUD_SIM_SEED: must be int like 42, got 'x'"),
        ({"FRAUD_TRAIN_DAY": "3"}, "FRAUD_TRAIN_DAY: not a setting of use case 'fraud'"),
        ({"FRAUD_END_DATE": "2025-01-01"}, "end_date (2025-01-01) is before start_date"),
        ({"FRAUD_LABEL_DELAY_DAYS": "350"}, "FRAUD_LABEL_DELAY_DAYS: terminal_id_nb_tx_60day"),
    ],
)
def test_bad_override_names_the_variable(fraud, env: dict[str, str], expected: str) -> None:
    with pytest.raises(UseCaseError) as info:
        resolve_settings(fraud, environ=env)
    assert expected in str(info.value)


def test_params_are_typed_by_their_folder_value(tmp_path: Path) -> None:
    def params(data: dict[str, Any]) -> None:
        data["settings"]["params"].update(
            shadow=True, rate=0.5, launch=date(2025, 1, 1), region="eu"
        )

    uc = load_use_case(write_case(tmp_path, mutate=params))
    env = {
        "FRAUD_SHADOW": "no",
        "FRAUD_RATE": "0.25",
        "FRAUD_LAUNCH": "2025-02-01",
        "FRAUD_REGION": "us",
        "FRAUD_SIM_SEED": "7",
    }
    p = resolve_settings(uc, environ=env).params
    assert p["shadow"] is False
    assert (p["rate"], p["launch"], p["region"], p["sim_seed"]) == (0.25, date(2025, 2, 1), "us", 7)
    assert resolve_settings(uc, environ={"FRAUD_SHADOW": "TRUE"}).params["shadow"] is True
    with pytest.raises(UseCaseError, match="FRAUD_SHADOW: must be bool like True, got 'maybe'"):
        resolve_settings(uc, environ={"FRAUD_SHADOW": "maybe"})
    with pytest.raises(UseCaseError, match="FRAUD_LAUNCH: must be date"):
        resolve_settings(uc, environ={"FRAUD_LAUNCH": "soon"})


def test_per_row_label_and_files_source_settings(tmp_path: Path) -> None:
    uc = load_use_case(write_flights(tmp_path, _set("source.default", "files")))
    with pytest.raises(UseCaseError, match="FLIGHTS_SOURCE_DIR: required when the source is"):
        resolve_settings(uc, environ={})
    env = {"FLIGHTS_SOURCE_DIR": str(tmp_path)}
    assert resolve_settings(uc, environ=env).source_dir == tmp_path
    # <PREFIX>SOURCE overrides the declared default: a package use case replays daily files
    packaged = load_use_case(write_flights(tmp_path / "packaged"))
    with pytest.raises(UseCaseError, match="FLIGHTS_SOURCE_DIR: required when the source is"):
        resolve_settings(packaged, environ={"FLIGHTS_SOURCE": "files"})
    assert source_kind(packaged, resolve_settings(packaged, environ={})) == "package"
    replay = resolve_settings(packaged, environ={"FLIGHTS_SOURCE": "files", **env})
    assert source_kind(packaged, replay) == "files"
    with pytest.raises(UseCaseError, match="FLIGHTS_SOURCE: 'simulator', but .* declares no"):
        resolve_settings(packaged, environ={"FLIGHTS_SOURCE": "simulator"})
    with pytest.raises(UseCaseError, match="FLIGHTS_LABEL_DELAY_DAYS: the label is known at a"):
        resolve_settings(uc, environ={**env, "FLIGHTS_LABEL_DELAY_DAYS": "1"})


# --- python hooks and derivations --------------------------------------------------------------


def test_hooks_resolve_folder_files_and_modules(fraud) -> None:
    simulate = fraud.hook("source.py:simulate_day")
    assert simulate is fraud.hook("source.py:simulate_day")  # imported once
    assert fraud.hook("ml_platform.data.simulator:generate_day") is generate_day
    with pytest.raises(UseCaseError, match="source.py:nope: source.py has no 'nope'"):
        fraud.hook("source.py:nope")
    with pytest.raises(UseCaseError, match="no_such_module_here:f: cannot import"):
        fraud.hook("no_such_module_here:f")


def test_declared_rules_give_their_reasons(tmp_path: Path) -> None:
    def rules(data: dict[str, Any]) -> None:
        data["schema"]["rules"] += [
            {"column": "tx_amount", "check": "range", "max": 5000},
            {"column": "tx_amount", "check": "range", "min": 0, "max": 10},
            {"column": "terminal_id", "check": "one_of", "values": [1, 2]},
        ]

    reasons = quarantine_reasons(load_use_case(write_case(tmp_path, mutate=rules)))
    assert "tx_amount: above 5000" in reasons
    assert "tx_amount: outside [0, 10]" in reasons
    assert "terminal_id: not one of 1, 2" in reasons


def test_example_request_of_a_files_source(tmp_path: Path) -> None:
    """A team's use case on daily files: the example is the earliest event of its first day."""
    uc = load_use_case(write_case(tmp_path, "alerts", mutate=_set("source.default", "files")))
    day = generate_day(date(2025, 4, 1), seed=3, n_customers=50, n_terminals=100)
    day.loc[1, contract.TX_DATETIME] = day.loc[0, contract.TX_DATETIME]  # a tie: id decides
    day.iloc[::-1].to_parquet(tmp_path / "2025-04-01.parquet")  # stored newest first
    settings = resolve_settings(uc, environ={"ALERTS_SOURCE_DIR": str(tmp_path)})
    example = example_request(uc, settings)
    first = day.iloc[0]
    assert example["transaction_id"] == int(first[contract.TRANSACTION_ID])
    assert example["tx_datetime"] == first[contract.TX_DATETIME].isoformat()
    assert list(example) == list(contract.REQUEST_COLUMNS)
    json.dumps(example)  # serialisable as it is
    day.iloc[:0].to_parquet(tmp_path / "2025-04-01.parquet")
    with pytest.raises(ValueError, match="use case 'alerts': no events on 2025-04-01"):
        example_request(uc, settings)


# --- the command ----------------------------------------------------------------------------------


def _first_transaction() -> dict[str, Any]:
    day = generate_day(date(2025, 4, 1), seed=42, n_customers=1000, n_terminals=2000)
    row = day.sort_values(contract.TX_DATETIME, kind="stable").iloc[0]
    return {
        col: row[col].isoformat() if col == contract.TX_DATETIME else row[col].item()
        for col in contract.REQUEST_COLUMNS
    }


def test_use_cases_json_lists_the_shipped_use_cases_with_real_events(capsys) -> None:
    assert main(["use-cases", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [tuple(e) for e in entries] == [CATALOG_KEYS, CATALOG_KEYS]
    flights, fraud = entries
    assert flights["name"] == "flights"
    assert flights["task"] == "regression"
    assert flights["entities"] == {
        "origin": "string",
        "carrier": "string",
        "tailnum": "string",
        "dest": "string",
    }
    assert flights["n_features"] == 11
    assert flights["service"] == "ml_platform.serving.service:FlightsDelay"
    assert list(flights["example_request"]) == get_use_case("flights").spec.event_schema.request
    assert fraud == {
        "name": "fraud",
        "folder": str(FRAUD_DIR),
        "task": "binary",
        "entities": {"customer_id": "int", "terminal_id": "int"},
        "n_features": 30,
        "model_name": "fraud_detector",
        "service": "ml_platform.serving.service:FraudDetector",
        "example_request": _first_transaction(),
    }


def test_use_cases_text_and_a_broken_folder(tmp_path: Path, capsys, settings_env) -> None:
    assert main(["use-cases"]) == 0
    out = capsys.readouterr().out
    assert "fraud: binary, 30 features, entities customer_id (int), terminal_id (int)" in out
    assert "flights: regression, 11 features, entities origin (string), carrier (string)" in out
    assert "bentoml serve ml_platform.serving.service:FraudDetector" in out
    assert f'"transaction_id": {_first_transaction()["transaction_id"]}' in out

    write_case(tmp_path / "team", "churn", mutate=lambda d: d["schema"]["request"].append("x"))
    settings_env(use_case_dirs=str(tmp_path / "team"))
    assert main(["use-cases"]) == 2
    err = capsys.readouterr().err
    assert "ml-platform use-cases: error: " in err
    assert "churn/use_case.yaml: schema.request[5]: the schema lacks 'x'" in err


# --- generic core ---------------------------------------------------------------------------------


#: Dagster stages every use case runs (their builders read only the declaration).
DAGSTER_GENERIC_STAGES = ("ingestion", "warehouse", "features", "training", "serving", "monitoring")
#: Monitoring modules every use case runs through (``ml_platform/monitoring/<name>.py``).
MONITORING_GENERIC = ("monitored", "drift", "performance", "skew", "daily", "summary")
MONITORING_GENERIC += ("summary_chart", "system", "demo_step")


def test_core_modules_name_no_column_of_a_use_case() -> None:
    """Outside the use-case folders, ml_platform/use_cases/ and the generic core modules
    (feature definitions, both feature engines, the online stores, validation, the API's
    request model, the prediction log, training data, metrics, models and the gate) name no
    column of any of them."""
    columns: set[str] = set()
    for uc in load_use_cases([PACKAGE_ROOT]).values():
        columns |= {*uc.columns, uc.spec.label.column}
    assert {contract.TX_AMOUNT, contract.CUSTOMER_ID} <= columns
    assert {"tailnum", "dep_delay", "origin", "sched_dep_at"} <= columns  # flights too
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(columns))) + r")\b")
    package = PACKAGE_ROOT.parent
    core = [
        *sorted(PACKAGE_ROOT.glob("*.py")),
        package / "features" / "definitions.py",
        package / "features" / "batch.py",
        package / "features" / "online.py",
        package / "features" / "sharded.py",
        package / "compute.py",
        package / "defs" / "resources.py",
        *sorted((package / "features" / "stores").glob("*.py")),
        package / "data" / "validation.py",
        package / "serving" / "schemas.py",
        package / "serving" / "prediction_log.py",
        package / "serving" / "event_ids.py",
        package / "serving" / "service.py",
        package / "training" / "registry.py",
        *(package / "training" / f"{m}.py" for m in ("metrics", "models", "gate", "datasets")),
        package / "data" / "sources.py",
        package / "features" / "from_files.py",
        *(package / "defs" / f"{m}.py" for m in ("names", "context", "partitions")),
        package / "defs" / "__init__.py",
        *(package / "defs" / stage / "assets.py" for stage in DAGSTER_GENERIC_STAGES),
        *(package / "defs" / stage / "__init__.py" for stage in DAGSTER_GENERIC_STAGES),
        *(package / "training" / f"{m}.py" for m in ("workflow", "registry", "dask_fit")),
        package / "serving" / "scoring.py",
        *(package / "monitoring" / f"{m}.py" for m in MONITORING_GENERIC),
        *(package / "defs" / "warehouse" / f"{m}.py" for m in ("generate", "project", "dbt_env")),
        *(
            package / "monitoring" / f"{m}.py"
            for m in ("policy", "retraining_backtest", "dask_gather")
        ),
        *sorted((package / "defs" / "automation").glob("*.py")),
        package / "serving" / "dask_scoring.py",
        package / "serving" / "edge.py",
        package / "training" / "backtest.py",
    ]
    assert {p.name for p in core} >= {"spec.py", "loader.py", "derive.py", "feature_port.py"}
    assert {"base.py", "sqlite.py", "redis.py"} <= {p.name for p in core}
    assert {contract.TRANSACTION_ID, contract.TX_DATETIME, contract.TX_FRAUD} <= columns
    hits = [f"{p.name}:{line}: {name}" for p in core for line, name in _named(p, pattern)]
    assert hits == []


def _column_pattern() -> re.Pattern[str]:
    """Every column of every shipped use case (and its label), as whole words."""
    columns: set[str] = set()
    for uc in load_use_cases([PACKAGE_ROOT]).values():
        columns |= {*uc.columns, uc.spec.label.column}
    return re.compile(r"\b(" + "|".join(map(re.escape, sorted(columns))) + r")\b")


def dbt_core_files(project: Path) -> list[Path]:
    """The dbt project's own files (SQL, YAML, docs): the models generated per use case
    (``models/use_cases/``, never committed) and dbt's output folders left out."""
    from ml_platform.defs.warehouse.generate import GENERATED_DIR

    skipped = (project / GENERATED_DIR, project / "target", project / "logs")
    return sorted(
        p
        for p in project.rglob("*")
        if p.suffix in {".sql", ".yml", ".yaml", ".md"}
        and not any(p.is_relative_to(s) for s in skipped)
    )


def test_dbt_project_names_no_column_of_a_use_case(tmp_path: Path) -> None:
    """No committed file of ``dbt_project/`` names a column of any use case: the models
    every use case gets are macros called with the declaration's columns, a use case's own
    models live in its folder. The scan finds a column written anywhere (SQL or YAML)."""
    from ml_platform.defs.warehouse.dbt_env import DBT_PROJECT_DIR

    pattern = _column_pattern()
    files = dbt_core_files(DBT_PROJECT_DIR)
    assert {p.name for p in files} >= {"use_case_models.sql", "dbt_project.yml", "profiles.yml"}
    hits = [
        f"{p.relative_to(DBT_PROJECT_DIR)}:{n}: {m.group(0)}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        for m in pattern.finditer(line)
    ]
    assert hits == []
    # the scan is real: a model naming a fraud or a flights column is found
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.sql").write_text("select customer_id from x\n")
    (tmp_path / "models" / "bad.yml").write_text("columns: [{name: dep_delay}]\n")
    found = {m.group(0) for p in dbt_core_files(tmp_path) for m in pattern.finditer(p.read_text())}
    assert found == {"customer_id", "dep_delay"}


#: Tokens holding text: strings (and, from Python 3.12, an f-string's literal parts), comments.
_TEXT_TOKENS = {
    tokenize.STRING,
    tokenize.COMMENT,
    getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING),
}


def _named(path: Path, pattern: re.Pattern[str]) -> list[tuple[int, str]]:
    """Where a file names a column: in a string or comment (as a word), or as an attribute
    (``frame.customer_id``). A local variable is not a column: ``dest = ...`` is not flights'
    ``dest``."""
    found = []
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    for before, tok in zip([None, *tokens], tokens, strict=False):
        if tok.type in _TEXT_TOKENS:
            found += [(tok.start[0], m.group(0)) for m in pattern.finditer(tok.string)]
        elif (
            tok.type == tokenize.NAME
            and before is not None
            and before.string == "."
            and pattern.fullmatch(tok.string)
        ):
            found.append((tok.start[0], tok.string))
    return found


def test_the_column_check_sees_strings_comments_and_attributes(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        'dest = 1  # a count\nx = frame["origin"]\ny = f"{x} tailnum"\n'
        "z = frame.carrier  # of the dep_delay\n"
    )
    pattern = re.compile(r"\b(origin|tailnum|carrier|dep_delay|dest)\b")
    assert _named(source, pattern) == [
        (2, "origin"),
        (3, "tailnum"),
        (4, "carrier"),
        (4, "dep_delay"),
    ]
