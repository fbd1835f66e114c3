"""Use-case declarations: fraud loads and equals today's platform; mistakes fail at load.

Every broken definition is a real folder written into ``tmp_path`` (a copy of the fraud
declaration with one mistake), loaded by the real loader.
"""

from __future__ import annotations

import json
import re
import shutil
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
from ml_platform.features.definitions import FEATURES
from ml_platform.settings import Settings
from ml_platform.use_cases import (
    UseCaseError,
    get_use_case,
    load_use_case,
    load_use_cases,
    resolve_settings,
)
from ml_platform.use_cases.derive import CATALOG_KEYS, quarantine_reasons
from ml_platform.use_cases.feature_port import to_feature_defs
from ml_platform.use_cases.loader import PACKAGE_ROOT, USE_CASE_FILE

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


def test_translation_refuses_what_todays_engines_cannot_compute(tmp_path: Path) -> None:
    def hourly(data: dict[str, Any]) -> None:
        _feature(data, "customer_id_seconds_since_prev_tx")["window"] = "36h"

    with pytest.raises(UseCaseError, match="customer_id_seconds_since_prev_tx: .*whole-day"):
        to_feature_defs(load_use_case(write_case(tmp_path, mutate=hourly)))


# --- bad definitions fail at load: file, field path, reason ----------------------------------


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
    "window plus delay beyond the horizon": (
        _set("features:customer_id_risk_30day_window.window", "395d"),
        "features[10] (customer_id_risk_30day_window).window: 395d plus the 7-day label delay",
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


def test_two_use_cases_with_one_env_prefix_fail(tmp_path: Path) -> None:
    write_case(tmp_path, "churn", mutate=_set("settings.env_prefix", "FRAUD_"))
    with pytest.raises(UseCaseError, match="settings.env_prefix: 'FRAUD_' is already used"):
        load_use_cases([PACKAGE_ROOT, tmp_path])


def test_the_documented_flights_declaration_loads(tmp_path: Path) -> None:
    """The design's second use case is expressible: string keys, hour and minute windows,
    a per-row label time, an as-of weather join, a regression task."""
    doc = (PACKAGE_ROOT.parent.parent / "docs" / "USE_CASES.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    flights = next(b for b in blocks if b.startswith("name: flights"))
    folder = tmp_path / "flights"
    folder.mkdir()
    (folder / USE_CASE_FILE).write_text(flights)
    (folder / "source.py").write_text("")
    uc = load_use_case(folder)
    assert uc.task == "regression"
    assert set(uc.entities.values()) == {"string"}
    assert "origin_mean_delay_3hour" in uc.feature_names
    assert "dest_flights_90minute" in uc.feature_names
    assert [f.kind for f in uc.features].count("asof") == 2
    assert resolve_settings(uc, environ={}).label_delay_days is None
    assert "distance: below 1" in quarantine_reasons(uc)
    with pytest.raises(UseCaseError, match="today's feature engines run only on"):
        to_feature_defs(uc)


# --- discovery ------------------------------------------------------------------------------------


def test_external_folders_come_from_the_setting(tmp_path: Path, settings_env) -> None:
    """A team's folder is found without touching the package: a parent or the folder itself."""
    write_case(tmp_path / "team", "churn")
    single = write_case(tmp_path, "alerts")
    settings_env(use_case_dirs=f"{tmp_path / 'team'}:{single}")
    cases = load_use_cases()
    assert list(cases) == ["fraud", "churn", "alerts"]
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


# --- the command ----------------------------------------------------------------------------------


def _first_transaction() -> dict[str, Any]:
    day = generate_day(date(2025, 4, 1), seed=42, n_customers=1000, n_terminals=2000)
    row = day.sort_values(contract.TX_DATETIME, kind="stable").iloc[0]
    return {
        col: row[col].isoformat() if col == contract.TX_DATETIME else row[col].item()
        for col in contract.REQUEST_COLUMNS
    }


def test_use_cases_json_lists_fraud_with_a_real_event(capsys) -> None:
    assert main(["use-cases", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [tuple(e) for e in entries] == [CATALOG_KEYS]
    fraud = entries[0]
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
    assert "bentoml serve ml_platform.serving.service:FraudDetector" in out
    assert f'"transaction_id": {_first_transaction()["transaction_id"]}' in out

    write_case(tmp_path / "team", "churn", mutate=lambda d: d["schema"]["request"].append("x"))
    settings_env(use_case_dirs=str(tmp_path / "team"))
    assert main(["use-cases"]) == 2
    err = capsys.readouterr().err
    assert "ml-platform use-cases: error: " in err
    assert "churn/use_case.yaml: schema.request[5]: the schema lacks 'x'" in err


# --- generic core ---------------------------------------------------------------------------------


def test_core_modules_name_no_column_of_a_use_case() -> None:
    """Outside the use-case folders, ml_platform/use_cases/ names no column of any of them."""
    columns: set[str] = set()
    for uc in load_use_cases([PACKAGE_ROOT]).values():
        columns |= {*uc.columns, uc.spec.label.column}
    assert {contract.TX_AMOUNT, contract.CUSTOMER_ID} <= columns
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(columns))) + r")\b")
    core = sorted(PACKAGE_ROOT.glob("*.py"))
    assert {p.name for p in core} >= {"spec.py", "loader.py", "derive.py", "feature_port.py"}
    hits = [
        f"{p.name}:{i}: {m.group(0)}"
        for p in core
        for i, line in enumerate(p.read_text().splitlines(), 1)
        for m in [pattern.search(line)]
        if m
    ]
    assert hits == []
