"""Every use case's dbt models, generated from its declaration into the dbt project.

One dbt project serves every use case (one DuckDB file, one manifest, one ``dbt`` resource).
Its committed part holds only generic SQL: the macros of ``macros/use_case_models.sql``.
For each use case, :func:`generate_models` writes ``models/use_cases/<name>/`` (git-ignored):
its lake and monitoring sources, three one-line models calling the macros with the columns
of its declaration (staging, prediction outcomes, the labelled performance mart), their dbt
tests (derived from the schema, the label and the validation rules), and a copy of the
models the use case ships in its own folder (``<folder>/dbt/``). Files are rewritten only
when their content changes, so an unchanged declaration keeps the manifest fresh.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ml_platform.defs import names
from ml_platform.defs.warehouse.dbt_env import DBT_PROJECT_DIR, LABEL_DELAY_DAYS
from ml_platform.use_cases.loader import UseCase, UseCaseError, engine_label_delay

#: Where the generated models live, relative to the dbt project (one folder per use case).
GENERATED_DIR = Path("models") / "use_cases"
#: A use case's own dbt models, relative to its folder.
OWN_MODELS_DIR = "dbt"
_OWN_SUFFIXES = (".sql", ".yml", ".yaml", ".md")
_HEADER = "generated from {file} by ml_platform/defs/warehouse/generate.py: do not edit"

#: Declared column type -> DuckDB type (and the label's, by task kind).
SQL_TYPES = {"int": "bigint", "string": "varchar", "float": "double", "datetime": "timestamp"}
LABEL_TYPES = {"binary": "integer", "regression": "double"}
#: The lake's external location of every source (hive folders of daily Parquet files).
EXTERNAL_LOCATION = (
    "read_parquet('{{ env_var(\"ML_PLATFORM_LAKE_DIR\") }}/{name}/*/*.parquet', "
    "hive_partitioning = true, union_by_name = true)"
)


def selection(use_case: str) -> str:
    """The dbt selection of one use case's models (its generated folder)."""
    return f"path:{(GENERATED_DIR / use_case).as_posix()}"


def model(base: str, uc: UseCase) -> str:
    return names.warehouse_model(base, uc.name)


def _literal(value: Any) -> str:
    """A Jinja literal (JSON strings, numbers and lists are valid Jinja)."""
    return json.dumps(value)


def _call(macro: str, *args: Any, **kwargs: str) -> str:
    """``{{ macro(args..., key=expr) }}``; keyword values are Jinja expressions."""
    parts = [_literal(a) for a in args] + [f"{k}={v}" for k, v in kwargs.items()]
    return "{{ " + macro + "(\n    " + ",\n    ".join(parts) + "\n) }}\n"


def _incremental() -> str:
    day = names.WAREHOUSE_DAY
    return (
        "{{ config(materialized='incremental', incremental_strategy='append', "
        f"pre_hook=\"{{{{ delete_partition_range('{day}') }}}}\") }}}}\n"
    )


def _staging_columns(uc: UseCase) -> list[list[str]]:
    """[column, SQL type] of the staging model: the declared columns, then the label."""
    cols = [[c, SQL_TYPES[t]] for c, t in uc.columns.items()]
    return [*cols, [uc.spec.label.column, LABEL_TYPES[uc.task]]]


def _models_sql(uc: UseCase, settings_delay: int) -> dict[str, str]:
    """The three generated models of ``uc`` (file name -> SQL)."""
    from ml_platform.serving.scoring import decision_column

    s, label, day = uc.spec.event_schema, uc.spec.label, names.WAREHOUSE_DAY
    header = "-- " + _HEADER.format(file=_declaration(uc)) + "\n"
    staging, outcomes = model(names.DBT_STAGING, uc), model(names.DBT_PREDICTION_OUTCOMES, uc)
    mart = model(names.DBT_PERFORMANCE_MART, uc)
    tables = [
        [names.lake_table(names.BATCH_PREDICTIONS, uc.name), "batch"],
        [names.lake_table(names.ONLINE_PREDICTIONS, uc.name), "online"],
    ]
    if label.known_at is not None:
        availability = {"known_at": _literal(label.known_at)}
    elif uc.is_flagship:  # the platform's setting, as dbt has always read it
        availability = {"delay_days": f"env_var('{LABEL_DELAY_DAYS}', '{settings_delay}')"}
    else:
        availability = {"delay_days": str(engine_label_delay(uc, settings_delay))}
    decision = decision_column(uc)
    flag = uc.spec.task.decision.above
    mart_kwargs = {"flag_above": str(flag)} if uc.task == "regression" and flag is not None else {}
    return {
        f"{staging}.sql": header
        + _incremental()
        + _call(
            "staging_model",
            uc.qualified(names.DBT_LAKE_SOURCE),
            names.lake_table(names.VALIDATED_EVENTS, uc.name),
            _staging_columns(uc),
            day,
        ),
        f"{outcomes}.sql": header
        + _incremental()
        + _call(
            "prediction_outcomes_model",
            staging,
            uc.qualified(names.DBT_MONITORING_SOURCE),
            tables,
            s.event_id.column,
            SQL_TYPES[s.event_id.type],
            [*s.entities, *s.values],
            decision,
            label.column,
            day,
            **availability,
        ),
        f"{mart}.sql": header
        + "{{ config(materialized='view') }}\n"
        + _call(
            "performance_daily_model",
            outcomes,
            staging,
            uc.task,
            label.column,
            decision,
            day,
            **mart_kwargs,
        ),
    }


def _column(name: str, description: str, tests: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "description": description}
    if tests:
        out["data_tests"] = tests
    return out


def _rule_tests(uc: UseCase) -> dict[str, list[Any]]:
    """dbt tests of the declared validation rules, per column."""
    out: dict[str, list[Any]] = {}
    for rule in uc.spec.event_schema.rules:
        if rule.check == "non_negative":
            test: Any = {"value_between": {"arguments": {"min_value": 0}}}
        elif rule.check == "range":
            bounds = {"min_value": rule.min, "max_value": rule.max}
            bounds = {k: v for k, v in bounds.items() if v is not None}
            test = {"value_between": {"arguments": bounds}}
        elif rule.check == "one_of":
            values = list(rule.values or [])
            quote = not all(isinstance(v, int | float) for v in values)
            test = {"accepted_values": {"arguments": {"values": values, "quote": quote}}}
        else:  # finite: a double column that loaded holds no NaN to test in SQL
            continue
        out.setdefault(rule.column, []).append(test)
    return out


def _binary_values() -> dict[str, Any]:
    return {"accepted_values": {"arguments": {"values": [0, 1], "quote": False}}}


def _properties(uc: UseCase) -> dict[str, Any]:
    """The generated models' descriptions and dbt tests (Dagster asset checks)."""
    s, label, day = uc.spec.event_schema, uc.spec.label, names.WAREHOUSE_DAY
    rules = _rule_tests(uc)
    label_tests: list[Any] = ["not_null"] + ([_binary_values()] if uc.task == "binary" else [])
    staging_cols = [
        _column(
            s.event_id.column,
            "The event's unique id.",
            ["unique", "not_null", *rules.get(s.event_id.column, [])],
        ),
        _column(s.event_time, "When the event happened.", ["not_null"]),
        _column(day, "The daily lake partition the row belongs to.", ["not_null"]),
        *(_column(c, "Entity key.", ["not_null", *rules.get(c, [])]) for c in s.entities),
        *(_column(c, "Value.", ["not_null", *rules.get(c, [])]) for c in s.values),
        _column(label.column, f"The label ({uc.task}).", label_tests),
    ]
    outcome_label: list[Any] = [_binary_values()] if uc.task == "binary" else []
    batch_online = {"accepted_values": {"arguments": {"values": ["batch", "online"]}}}
    return {
        "version": 2,
        "models": [
            {
                "name": model(names.DBT_STAGING, uc),
                "description": f"Validated events of {uc.name}, typed to its declaration, one "
                "row per event. Incremental: a run deletes and re-inserts its days.",
                "columns": staging_cols,
            },
            {
                "name": model(names.DBT_PREDICTION_OUTCOMES, uc),
                "description": "Every batch and online prediction joined with its event's "
                "label, with the day the label is available. Rebuilt per partition range.",
                "columns": [
                    _column(s.event_id.column, "The event scored.", ["not_null"]),
                    _column("source", "batch or online.", [batch_online]),
                    _column("score", "The model's score.", ["not_null"]),
                    _column(label.column, "The event's label.", outcome_label),
                ],
            },
            {
                "name": model(names.DBT_PERFORMANCE_MART, uc),
                "description": f"Labelled performance ({uc.task}) per day, model version and "
                "source, on matured labels only.",
                "columns": [
                    _column(day, "The day scored.", ["not_null"]),
                    _column("model_version", "The model version.", ["not_null"]),
                ],
            },
        ],
    }


def _sources(uc: UseCase) -> dict[str, Any]:
    def table(base: str, description: str) -> dict[str, Any]:
        return {
            "name": names.lake_table(base, uc.name),
            "description": description,
            "config": {"meta": {"dagster": {"asset_key": [base]}}},
        }

    location = {"meta": {"external_location": EXTERNAL_LOCATION}}
    return {
        "version": 2,
        "sources": [
            {
                "name": uc.qualified(names.DBT_LAKE_SOURCE),
                "description": f"The Parquet lake of {uc.name}, one hive folder per day, read "
                "in place by DuckDB.",
                "config": location,
                "tables": [
                    table(names.VALIDATED_EVENTS, "Events that passed the declared schema."),
                    table(names.QUARANTINED_EVENTS, "Rows that broke it, with the reason."),
                ],
            },
            {
                "name": uc.qualified(names.DBT_MONITORING_SOURCE),
                "description": f"Predictions of {uc.name}'s models, batch and online.",
                "config": location,
                "tables": [
                    table(names.BATCH_PREDICTIONS, "Events scored by the batch asset."),
                    table(names.ONLINE_PREDICTIONS, "Events answered by the real-time API."),
                ],
            },
        ],
    }


def _declaration(uc: UseCase) -> str:
    """The declaration file, relative to the project when it lies inside it."""
    from ml_platform.settings import PROJECT_DIR

    return str(uc.file.relative_to(PROJECT_DIR) if uc.file.is_relative_to(PROJECT_DIR) else uc.file)


def _yaml(uc: UseCase, data: dict[str, Any]) -> str:
    header = "# " + _HEADER.format(file=_declaration(uc)) + "\n"
    return header + yaml.safe_dump(data, sort_keys=False, width=100)


def _own_models(uc: UseCase) -> dict[str, str]:
    """The dbt files the use case ships in ``<folder>/dbt/`` (relative path -> text). Another
    use case's models must carry its name (``<name>_...``): two never share a table."""
    root = uc.folder / OWN_MODELS_DIR
    if not root.is_dir():
        return {}
    out = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in _OWN_SUFFIXES:
            continue
        if path.suffix == ".sql" and not uc.is_flagship and not path.stem.startswith(f"{uc.name}_"):
            raise UseCaseError(
                f"{path}: dbt model {path.stem!r}: its name must start with '{uc.name}_' "
                "(the warehouse is shared by every use case)"
            )
        out[(Path("own") / path.relative_to(root)).as_posix()] = path.read_text()
    return out


def use_case_files(uc: UseCase, settings_delay: int) -> dict[str, str]:
    """Every generated file of one use case (path relative to its folder -> content)."""
    files = {
        "_sources.yml": _yaml(uc, _sources(uc)),
        "_models.yml": _yaml(uc, _properties(uc)),
        **_models_sql(uc, settings_delay),
    }
    return files | _own_models(uc)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` whole: a process sharing the project (a parse, a freshness check)
    never reads half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def generate_models(
    use_cases: Iterable[UseCase], settings_delay: int, project_dir: Path = DBT_PROJECT_DIR
) -> list[Path]:
    """Write every use case's models under ``models/use_cases/``; remove the files these use
    cases no longer generate. Returns the files written (unchanged ones are left alone)."""
    use_cases = list(use_cases)
    root = project_dir / GENERATED_DIR
    wanted = {
        root / uc.name / rel: text
        for uc in use_cases
        for rel, text in use_case_files(uc, settings_delay).items()
    }
    written = []
    for path, text in wanted.items():
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
        written.append(path)
    # stale files of these use cases go; another use case's folder stays (a process that
    # loads other use cases may be parsing it now; `make clean` removes them all)
    for folder in {root / uc.name for uc in use_cases}:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file() and path not in wanted and not path.name.startswith("."):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                shutil.rmtree(path, ignore_errors=True)
    return written
