"""Find, load and check use-case folders; resolve their settings.

A use case is a folder holding ``use_case.yaml`` (validated by ``spec.UseCaseSpec``) and,
when YAML cannot say it, Python files it references as ``file.py:function`` (a simulator,
a custom source). Folders are found in this package (``ml_platform/use_cases/<name>/``)
and in the folders of ``ML_PLATFORM_USE_CASE_DIRS`` (``os.pathsep``-separated; each is a
use-case folder or a folder of them), so a team adds its own without touching the package.

Every mistake is reported as ``<file>: <field path>: <reason>``, all of a file's mistakes
at once, so a definition is fixed in one pass rather than one error per run.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import ValidationError

from ml_platform.use_cases.spec import (
    BASELINES,
    DECISIONS,
    LABEL_FUNCTIONS,
    MAX_HORIZON_DAYS,
    METRIC_FUNCTIONS,
    METRICS,
    NAME_PATTERN,
    NO_INPUT_FUNCTIONS,
    UNIT_WORDS,
    AsOfFeature,
    ResolvedSettings,
    RowFeature,
    UseCaseSpec,
    WindowFeature,
    duration_seconds,
    parse_duration,
)

USE_CASE_FILE = "use_case.yaml"
USE_CASE_DIRS_ENV = "ML_PLATFORM_USE_CASE_DIRS"
PACKAGE_ROOT = Path(__file__).resolve().parent
PLATFORM_ENV_PREFIX = "ML_PLATFORM_"
_ENV_PREFIX = re.compile(r"^[A-Z][A-Z0-9_]*_$")
_DAY_SECONDS = 86_400
_NUMERIC = {"int", "float"}


class UseCaseError(ValueError):
    """A use-case definition is wrong; the message names the file, the field and the reason."""


def _fail(file: Path, problems: Iterable[str]) -> UseCaseError:
    problems = list(problems)
    if len(problems) == 1:
        return UseCaseError(f"{file}: {problems[0]}")
    return UseCaseError(f"{file}: {len(problems)} problems:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class UseCase:
    """A loaded, checked use case: its declaration plus what is derived from it."""

    spec: UseCaseSpec
    folder: Path
    features: tuple[RowFeature | WindowFeature | AsOfFeature, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def file(self) -> Path:
        return self.folder / USE_CASE_FILE

    @property
    def task(self) -> str:
        return self.spec.label.task

    @property
    def entities(self) -> dict[str, str]:
        return dict(self.spec.event_schema.entities)

    @property
    def model_name(self) -> str:
        return self.spec.model_name or self.qualified("model")

    @property
    def service(self) -> str:
        return self.spec.service

    @property
    def env_prefix(self) -> str:
        return self.spec.settings.env_prefix or f"{self.name.upper()}_"

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @cached_property
    def columns(self) -> dict[str, str]:
        """Every declared event column (label excluded) -> its type, in declaration order."""
        return _columns(self.spec)

    @property
    def is_flagship(self) -> bool:
        """The platform's default use case: it keeps today's ``ML_PLATFORM_*`` settings."""
        from ml_platform.features.definitions import DEFAULT_USE_CASE

        return self.name == DEFAULT_USE_CASE

    def qualified(self, base: str) -> str:
        """Asset, table, job and store names carry the use case's name: two never collide."""
        return f"{self.name}_{base}"

    def hook(self, reference: str) -> Callable[..., Any]:
        """The function a ``file.py:function`` (in the folder) or ``module:function`` names."""
        target, _, attr = reference.partition(":")
        try:
            module = self._module(target)
        except (ImportError, OSError) as exc:
            raise UseCaseError(f"{self.file}: {reference}: cannot import {target} ({exc})") from exc
        try:
            return getattr(module, attr)
        except AttributeError:
            raise UseCaseError(f"{self.file}: {reference}: {target} has no {attr!r}") from None

    def _module(self, target: str) -> ModuleType:
        """A module by name, or a file of the folder imported once under a private name."""
        if not target.endswith(".py"):
            return importlib.import_module(target)
        path = self.folder / target
        module_name = f"_ml_platform_use_case_{self.name}_{path.stem}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # registered first: pickling and re-imports find it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module


# --- reading and shape validation -----------------------------------------------------------


def _loc(loc: tuple[Any, ...], data: Any) -> str:
    """Pydantic's error location as ``features[3] (name).window`` (union tags dropped)."""
    out, node, indexed = "", data, False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                out += f" ({node['name']})"
            indexed = True
            continue
        if indexed and isinstance(node, dict) and part == node.get("kind"):
            indexed = False
            continue  # the discriminated union's tag right after the index, not a field
        indexed = False
        out += f".{part}" if out else str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _message(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML whose mappings refuse a key given twice (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_spec(file: Path) -> UseCaseSpec:
    """Parse and shape-check one ``use_case.yaml``."""
    try:
        data = yaml.load(file.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise UseCaseError(f"{file}: {where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise UseCaseError(f"{file}: (top level): expected a mapping of declarations")
    try:
        return UseCaseSpec.model_validate(data)
    except ValidationError as exc:
        raise _fail(
            file, (f"{_loc(e['loc'], data)}: {_message(e)}" for e in exc.errors())
        ) from None


# --- feature expansion ------------------------------------------------------------------------


def _fill(template: str, words: Mapping[str, str]) -> str:
    for placeholder, word in words.items():
        template = template.replace(placeholder, word)
    return template


def _expand(spec: UseCaseSpec) -> tuple[list[tuple[str, Any]], list[str]]:
    """(field path, feature) per feature, one per window of a ``windows`` list; problems."""
    out: list[tuple[str, Any]] = []
    problems: list[str] = []
    for i, f in enumerate(spec.features):
        path = f"features[{i}] ({f.name})"
        if not isinstance(f, WindowFeature):
            out.append((path, f))
            continue
        if (f.window is None) == (f.windows is None):
            problems.append(f"{path}: give exactly one of window and windows")
            continue
        if f.window is not None:
            out.append((path, f))
            continue
        if "{n}" not in f.name:
            problems.append(
                f"{path}.name: with several windows the name needs {{n}} (and {{unit}})"
            )
            continue
        for w in f.windows or []:
            n, unit = parse_duration(w)
            words = {"{n}": str(n), "{unit}": UNIT_WORDS[unit]}
            out.append(
                (
                    path,
                    f.model_copy(
                        update={
                            "name": _fill(f.name, words),
                            "description": _fill(f.description, words),
                            "window": w,
                            "windows": None,
                        }
                    ),
                )
            )
    return out, problems


# --- cross-field checks -----------------------------------------------------------------------


def _columns(spec: UseCaseSpec) -> dict[str, str]:
    s = spec.event_schema
    cols: dict[str, str] = {s.event_id.column: s.event_id.type, s.event_time: "datetime"}
    cols.update(s.entities)
    cols.update(s.values)
    cols.update(s.extras)
    return cols


def _schema_problems(spec: UseCaseSpec) -> list[str]:
    s, label = spec.event_schema, spec.label
    problems: list[str] = []
    seen: dict[str, str] = {}
    roles = [("schema.event_id.column", s.event_id.column), ("schema.event_time", s.event_time)]
    roles += [(f"schema.entities.{c}", c) for c in s.entities]
    roles += [(f"schema.values.{c}", c) for c in s.values]
    roles += [(f"schema.extras.{c}", c) for c in s.extras]
    roles += [("label.column", label.column)]
    for path, col in roles:
        if col in seen:
            problems.append(f"{path}: column {col!r} is already declared as {seen[col]}")
        seen.setdefault(col, path)
    cols = _columns(spec)
    known = ", ".join(cols)
    for i, col in enumerate(s.event_id.derive_from or []):
        if col not in cols or col == s.event_id.column:
            problems.append(
                f"schema.event_id.derive_from[{i}]: unknown column {col!r} (declared: {known})"
            )
    for i, col in enumerate(s.request):
        if col == label.column or col == label.known_at:
            problems.append(f"schema.request[{i}]: {col!r} is the label, not known at request time")
        elif col not in cols:
            problems.append(f"schema.request[{i}]: the schema lacks {col!r} (declared: {known})")
    request = set(s.request)
    needed = [s.event_time, *s.entities]
    if not s.event_id.derive_from:
        needed.insert(0, s.event_id.column)
    else:
        needed += s.event_id.derive_from
    for col in needed:
        if col not in request and col in cols:
            problems.append(f"schema.request: must carry {col!r} (the engines key events by it)")
    for i, rule in enumerate(s.rules):
        path = f"schema.rules[{i}]"
        typ = cols.get(rule.column)
        if typ is None:
            problems.append(f"{path}.column: unknown column {rule.column!r} (declared: {known})")
            continue
        if rule.check in ("non_negative", "finite", "range") and typ not in _NUMERIC:
            problems.append(
                f"{path}.check: {rule.check} needs a numeric column, {rule.column} is {typ}"
            )
        if rule.check == "range" and rule.min is None and rule.max is None:
            problems.append(f"{path}: range needs min, max or both")
        if rule.check == "one_of" and not rule.values:
            problems.append(f"{path}.values: one_of needs the allowed values")
    if (label.delay_days is None) == (label.known_at is None):
        problems.append(
            "label: say when the label is known: delay_days (a fixed delay) or known_at "
            "(a column with each row's time), exactly one"
        )
    if label.known_at is not None and s.extras.get(label.known_at) != "datetime":
        problems.append(
            f"label.known_at: {label.known_at!r} must be declared in schema.extras as datetime"
        )
    if (label.known_at is None) != (label.known_within is None):
        problems.append(
            "label.known_within: a label known at a per-row time (known_at) needs known_within, "
            "how long after its event it is known at most (and only then)"
        )
    for name, table in s.side_tables.items():
        if table.time in table.keys or table.time in table.columns:
            problems.append(f"schema.side_tables.{name}.time: {table.time!r} is also a key/column")
    return problems


def _feature_problems(spec: UseCaseSpec, features: list[tuple[str, Any]]) -> list[str]:
    s, label = spec.event_schema, spec.label
    cols = _columns(spec)
    request = set(s.request)
    binary = label.task == "binary"
    problems: list[str] = []
    names: dict[str, str] = {}
    for path, f in features:
        if f.name in names:
            problems.append(f"{path}.name: {f.name!r} is already the name of {names[f.name]}")
        names.setdefault(f.name, path)
        if not NAME_PATTERN.match(f.name):
            problems.append(f"{path}.name: {f.name!r}: use lower-case letters, digits and _")
        if isinstance(f, RowFeature):
            problems += _row_problems(path, f, cols, request)
        elif isinstance(f, WindowFeature):
            problems += _window_problems(path, f, spec, cols, request, binary)
        else:
            problems += _asof_problems(path, f, s, request)
    return problems


def _row_problems(path: str, f: RowFeature, cols: dict[str, str], request: set[str]) -> list[str]:
    problems = []
    if f.function == "value":
        if f.of is None:
            problems.append(f"{path}.of: value needs the column it passes on")
        elif cols.get(f.of) not in _NUMERIC:
            problems.append(f"{path}.of: unknown numeric column {f.of!r}")
        elif f.of not in request:
            problems.append(f"{path}.of: {f.of!r} is not a request field, so it cannot be served")
    elif f.of is not None:
        problems.append(f"{path}.of: {f.function} reads the event time, not a column")
    if (f.function == "is_night") != (f.last_hour is not None):
        problems.append(f"{path}.last_hour: required by is_night and only by it")
    return problems


def _window_problems(
    path: str,
    f: WindowFeature,
    spec: UseCaseSpec,
    cols: dict[str, str],
    request: set[str],
    binary: bool,
) -> list[str]:
    s, label = spec.event_schema, spec.label
    problems = []
    if f.entity not in s.entities:
        problems.append(
            f"{path}.entity: unknown entity {f.entity!r} (entities: {', '.join(s.entities)})"
        )
    if f.function in NO_INPUT_FUNCTIONS:
        if f.of is not None:
            problems.append(f"{path}.of: {f.function} takes no input column")
    elif f.of is None:
        problems.append(f"{path}.of: {f.function} needs the column it aggregates")
    elif f.of == label.column:
        if f.function not in ("sum", "mean", "min", "max"):
            problems.append(f"{path}.of: {f.function} aggregates a value column, not the label")
    elif f.of not in s.values:
        problems.append(
            f"{path}.of: unknown column {f.of!r} (values: {', '.join(s.values) or 'none'}; "
            f"label: {label.column})"
        )
    elif f.of not in request:
        problems.append(f"{path}.of: {f.of!r} is not a request field, so it cannot be served")
    reads_label = f.of == label.column or f.function in LABEL_FUNCTIONS
    if f.function in LABEL_FUNCTIONS and not binary:
        problems.append(f"{path}.function: {f.function} needs a binary label")
    if reads_label and not f.matured:
        problems.append(
            f"{path}.matured: reads the label {label.column!r}, which is known only after its "
            "delay: set matured: true (the window then ends where labels are known)"
        )
    if f.window is not None:
        delay = (label.delay_days or 0) if f.matured else 0
        horizon = duration_seconds(f.window) / _DAY_SECONDS + delay
        if horizon > MAX_HORIZON_DAYS:
            problems.append(
                f"{path}.window: {f.window} plus the {delay}-day label delay looks back "
                f"{horizon:g} days, beyond the {MAX_HORIZON_DAYS}-day horizon the engines keep"
            )
    return problems


def _asof_problems(path: str, f: AsOfFeature, s: Any, request: set[str]) -> list[str]:
    table = s.side_tables.get(f.table)
    if table is None:
        return [
            f"{path}.table: unknown side table {f.table!r} (declared: "
            f"{', '.join(s.side_tables) or 'none'})"
        ]
    problems = []
    if f.column not in table.columns:
        problems.append(f"{path}.column: {f.table} has no column {f.column!r}")
    for event_col, key in f.join.items():
        if event_col not in request:
            problems.append(f"{path}.join.{event_col}: not a request field of the schema")
        if key not in table.keys:
            problems.append(f"{path}.join.{event_col}: {f.table} has no key {key!r}")
    missing = set(table.keys) - set(f.join.values())
    if missing:
        keys = ", ".join(sorted(missing))
        problems.append(f"{path}.join: every key of {f.table} must be joined ({keys})")
    return problems


def _task_problems(spec: UseCaseSpec) -> list[str]:
    t, kind = spec.task, spec.label.task
    metrics = METRICS[kind]
    problems = []
    baseline = BASELINES[kind]
    if baseline not in t.candidates:
        problems.append(f"task.candidates: the linear baseline {baseline} is always a candidate")
    for i, c in enumerate(t.candidates):
        if c in BASELINES.values() and c != baseline:
            problems.append(f"task.candidates[{i}]: {c} does not fit a {kind} label")
    pm = t.primary_metric
    if pm.name not in metrics:
        problems.append(
            f"task.primary_metric.name: unknown {kind} metric {pm.name!r} ({', '.join(metrics)})"
        )
    elif pm.direction != metrics[pm.name]:
        problems.append(
            f"task.primary_metric.direction: {pm.name} is to {metrics[pm.name]}, not {pm.direction}"
        )
    for i, m in enumerate(t.extra_metrics):
        path = f"task.extra_metrics[{i}]"
        name = m if isinstance(m, str) else m.name
        function = None if isinstance(m, str) else m.function
        if function is None:
            if name not in metrics:
                problems.append(f"{path}: unknown {kind} metric {name!r} ({', '.join(metrics)})")
            continue
        if function not in METRIC_FUNCTIONS[kind]:
            problems.append(f"{path}.function: unknown {kind} metric function {function!r}")
        elif m.entity not in spec.event_schema.entities or m.k is None:
            problems.append(f"{path}: {function} needs entity (one of the entities) and k")
    if t.gate_metric is not None and t.gate_metric not in metrics:
        problems.append(f"task.gate_metric: unknown {kind} metric {t.gate_metric!r}")
    if (t.gate_metric is None) != (spec.settings.gate_min is None):
        problems.append("task.gate_metric: give it together with settings.gate_min (its floor)")
    d = t.decision
    if d.kind != DECISIONS[kind]:
        problems.append(f"task.decision.kind: a {kind} task decides by {DECISIONS[kind]}")
    elif d.kind == "value_and_flag" and (d.flag is None or d.above is None):
        problems.append("task.decision: value_and_flag needs flag and above")
    elif d.kind == "threshold" and (d.flag is not None or d.above is not None):
        problems.append("task.decision: threshold takes no flag or above (it is learnt)")
    return problems


def _top_problems(spec: UseCaseSpec, folder: Path) -> list[str]:
    problems = []
    if spec.name != folder.name:
        problems.append(f"name: {spec.name!r} differs from its folder's name {folder.name!r}")
    if spec.model_name is not None and not spec.model_name.startswith(f"{spec.name}_"):
        problems.append(f"model_name: must start with the use case's name ({spec.name}_)")
    if ".py:" in spec.service:
        problems.append("service: a BentoML target is module:Class, not a file")
    src = spec.source
    if src.default in ("simulator", "package") and getattr(src, src.default) is None:
        problems.append(f"source.{src.default}: the default source needs its function")
    references = [(f"source.{kind}", getattr(src, kind)) for kind in ("simulator", "package")]
    for name, table in spec.event_schema.side_tables.items():
        path = f"schema.side_tables.{name}.source"
        references.append((path, table.source))  # none: <source_dir>/<table>/ files
    for path, reference in references:
        target = (reference or "").partition(":")[0]
        if target.endswith(".py") and not (folder / target).is_file():
            problems.append(f"{path}: no file {target} in {folder}")
    st = spec.settings
    if st.end_date < st.start_date:
        problems.append(f"settings.end_date: {st.end_date} is before start_date {st.start_date}")
    for param in st.params:
        if param in ResolvedSettings.model_fields:
            problems.append(f"settings.params.{param}: a setting of its own, not a parameter")
    prefix = st.env_prefix or f"{spec.name.upper()}_"
    if not _ENV_PREFIX.match(prefix) or prefix == PLATFORM_ENV_PREFIX:
        problems.append(
            f"settings.env_prefix: {prefix!r} must be upper case, end with _ and not be "
            f"{PLATFORM_ENV_PREFIX}"
        )
    return problems


def load_use_case(folder: Path) -> UseCase:
    """Load and check the use case in ``folder``; raise ``UseCaseError`` naming each mistake."""
    folder = Path(folder).resolve()
    file = folder / USE_CASE_FILE
    if not file.is_file():
        raise UseCaseError(f"{file}: no such file (a use-case folder holds {USE_CASE_FILE})")
    spec = read_spec(file)
    features, problems = _expand(spec)
    problems = _top_problems(spec, folder) + _schema_problems(spec) + problems
    problems += _feature_problems(spec, features) + _task_problems(spec)
    if problems:
        raise _fail(file, problems)
    return UseCase(spec=spec, folder=folder, features=tuple(f for _, f in features))


# --- discovery --------------------------------------------------------------------------------


def use_case_roots(extra_dirs: str | None = None) -> list[Path]:
    """The package's folder, then each folder of ``extra_dirs`` (``os.pathsep``-separated).

    ``extra_dirs`` defaults to the platform setting ``use_case_dirs``.
    """
    if extra_dirs is None:
        from ml_platform.settings import get_settings

        extra_dirs = get_settings().use_case_dirs
    roots = [PACKAGE_ROOT]
    for part in (extra_dirs or "").split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part.strip()).expanduser().resolve()
        if not path.is_dir():
            raise UseCaseError(f"{USE_CASE_DIRS_ENV}: {path}: no such folder")
        roots.append(path)
    return roots


def discover(roots: Iterable[Path]) -> list[Path]:
    """Use-case folders: a root holding ``use_case.yaml`` itself, or its sub-folders that do."""
    found: list[Path] = []
    for root in roots:
        if (root / USE_CASE_FILE).is_file():
            found.append(root)
            continue
        found += sorted(p.parent for p in root.glob(f"*/{USE_CASE_FILE}"))
    return found


def load_use_cases(roots: Iterable[Path] | None = None) -> dict[str, UseCase]:
    """Every use case, by name; two with one name, env prefix or model name is an error."""
    out: dict[str, UseCase] = {}
    for folder in discover(use_case_roots() if roots is None else roots):
        uc = load_use_case(folder)
        for other in out.values():
            _clash(uc, other)
        out[uc.name] = uc
    return out


def _clash(uc: UseCase, other: UseCase) -> None:
    """Two use cases may share no name, model name or environment prefix (nor nest prefixes:
    ``FRAUD_EU_X`` would be read as the unknown setting ``EU_X`` of ``FRAUD_``)."""
    for attr, what in (("name", "name"), ("model_name", "model_name")):
        if getattr(uc, attr) == getattr(other, attr):
            raise UseCaseError(
                f"{uc.file}: {what}: {getattr(uc, attr)!r} is already used by the use case "
                f"in {other.file}; two use cases cannot share it"
            )
    a, b = uc.env_prefix, other.env_prefix
    if a.startswith(b) or b.startswith(a):
        raise UseCaseError(
            f"{uc.file}: settings.env_prefix: {a!r} overlaps {b!r} of the use case in "
            f"{other.file}; each use case needs its own prefix"
        )


def get_use_case(name: str, roots: Iterable[Path] | None = None) -> UseCase:
    """One use case by name (all are loaded: a clash elsewhere must not go unnoticed)."""
    cases = load_use_cases(roots)
    if name not in cases:
        raise UseCaseError(f"use case {name!r}: not found (known: {', '.join(cases) or 'none'})")
    return cases[name]


# --- settings ---------------------------------------------------------------------------------


def _coerce_param(env: str, text: str, default: Any) -> Any:
    """An environment string typed like the folder's value of that parameter."""
    try:
        if isinstance(default, bool):
            if text.strip().lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return text.strip().lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, date):
            return date.fromisoformat(text)
    except ValueError:
        raise UseCaseError(
            f"{env}: must be {type(default).__name__} like {default!r}, got {text!r}"
        ) from None
    return text


def resolve_settings(
    use_case: UseCase, environ: Mapping[str, str] | None = None
) -> ResolvedSettings:
    """The use case's settings: folder values overridden by ``<PREFIX><FIELD>`` variables.

    Read when called (never at import), so a process or a test can change the environment
    first. An unknown ``<PREFIX>...`` variable is an error: a typo must not be ignored.
    """
    env = os.environ if environ is None else environ
    prefix = use_case.env_prefix
    folder_values = use_case.spec.settings.model_dump(exclude_unset=True)
    values: dict[str, Any] = {
        **folder_values,
        "env_prefix": prefix,
        "label_delay_days": use_case.spec.label.delay_days,
    }
    params = dict(use_case.spec.settings.params)
    fields = set(ResolvedSettings.model_fields) - {"env_prefix", "params"}
    sources: dict[str, str] = {}
    for key, text in env.items():
        if not key.startswith(prefix):
            continue
        field = key[len(prefix) :].lower()
        if field in fields:
            values[field] = text
            sources[field] = key
        elif field in params:
            params[field] = _coerce_param(key, text, params[field])
        else:
            known = sorted(fields | set(params))
            raise UseCaseError(
                f"{key}: not a setting of use case {use_case.name!r} (settings: {', '.join(known)})"
            )
    values["params"] = params
    try:
        resolved = ResolvedSettings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            where = sources.get(field, f"{use_case.file}: settings.{field}")
            problems.append(f"{where}: {_message(e)}")
        raise UseCaseError("; ".join(problems)) from None
    if (
        "source_dir" not in sources
        and resolved.source_dir is not None
        and not resolved.source_dir.is_absolute()
    ):  # a folder's own relative path is relative to the folder, wherever the process runs
        resolved = resolved.model_copy(update={"source_dir": use_case.folder / resolved.source_dir})
    problems = []
    if use_case.spec.label.known_at is not None and resolved.label_delay_days is not None:
        problems.append(
            f"{prefix}LABEL_DELAY_DAYS: the label is known at a per-row time "
            f"({use_case.spec.label.known_at}), not after a fixed delay"
        )
    if resolved.end_date < resolved.start_date:
        problems.append(
            f"end_date ({resolved.end_date}) is before start_date ({resolved.start_date})"
        )
    kind = source_kind(use_case, resolved)
    if kind == "files" and resolved.source_dir is None:
        problems.append(f"{prefix}SOURCE_DIR: required when the source is files")
    elif kind != "files" and getattr(use_case.spec.source, kind) is None:
        problems.append(f"{prefix}SOURCE: {kind!r}, but {use_case.file} declares no source.{kind}")
    delay = resolved.label_delay_days or 0
    for f in use_case.features:
        if isinstance(f, WindowFeature) and f.matured and f.window is not None:
            horizon = duration_seconds(f.window) / _DAY_SECONDS + delay
            if horizon > MAX_HORIZON_DAYS:
                problems.append(
                    f"{prefix}LABEL_DELAY_DAYS: {f.name} would look back {horizon:g} days, "
                    f"beyond the {MAX_HORIZON_DAYS}-day horizon"
                )
    if problems:
        raise UseCaseError(f"use case {use_case.name!r}: " + "; ".join(problems))
    return resolved


def source_kind(use_case: UseCase, settings: ResolvedSettings) -> str:
    """Where the use case's events come from: ``settings.source`` (``<PREFIX>SOURCE``) when
    set, else the folder's ``source.default``."""
    return settings.source or use_case.spec.source.default


def declared_label_delay(use_case: UseCase) -> int | None:
    """Whole days until every label of a day is known, as the folder declares it: the fixed
    ``label.delay_days``, or a per-row label's ``known_within`` rounded up (at least 1);
    None when the folder declares neither (the platform's delay applies)."""
    label = use_case.spec.label
    if label.known_within is not None:
        return max(1, math.ceil(duration_seconds(label.known_within) / _DAY_SECONDS))
    return label.delay_days


def engine_label_delay(use_case: UseCase, platform_delay: int) -> int:
    """The label delay the engines and the online store of a use case run with.

    The default use case keeps today's platform variable (``ML_PLATFORM_LABEL_DELAY_DAYS``,
    ``platform_delay``); any other use case has its own (``<PREFIX>LABEL_DELAY_DAYS``, else
    its folder). A label known at a per-row time has no fixed delay: the engines ignore the
    value for those windows, so the platform's is passed through.
    """
    if use_case.is_flagship or use_case.spec.label.delay_days is None:
        return platform_delay
    return int(resolve_settings(use_case).label_delay_days or platform_delay)


def registered_model_name(use_case: UseCase, platform_model_name: str) -> str:
    """The registry name of a use case's model: the default use case keeps today's platform
    variable (``ML_PLATFORM_MODEL_NAME``, ``platform_model_name``); any other its own."""
    return platform_model_name if use_case.is_flagship else use_case.model_name
