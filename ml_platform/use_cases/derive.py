"""What the platform derives from a declaration rather than writing it per use case.

Here: the quarantine reasons validation gives (``<column>: <rule>``), an example request
(a real event of the use case's data, request fields only) and the catalogue row that
``ml-platform use-cases`` prints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ml_platform.use_cases.loader import UseCase, resolve_settings
from ml_platform.use_cases.spec import ResolvedSettings, Rule

_RULE_REASONS = {"non_negative": "negative", "finite": "not finite"}
#: The keys of each object ``ml-platform use-cases --json`` prints, in order.
CATALOG_KEYS = (
    "name",
    "folder",
    "task",
    "entities",
    "n_features",
    "model_name",
    "service",
    "example_request",
)


def _rule_reason(rule: Rule) -> str:
    if rule.check in _RULE_REASONS:
        return _RULE_REASONS[rule.check]
    if rule.check == "one_of":
        return "not one of " + ", ".join(map(str, rule.values or []))
    if rule.max is None:
        return f"below {rule.min:g}"
    if rule.min is None:
        return f"above {rule.max:g}"
    return f"outside [{rule.min:g}, {rule.max:g}]"


def quarantine_reasons(use_case: UseCase) -> list[str]:
    """Every reason a row of this use case can be quarantined for, in evaluation order.

    Types imply most of them (a missing value, an unparseable number or time, a fractional
    id, a label outside 0/1, a time outside the partition day, a repeated event id); the
    declared rules add the rest.
    """
    s, label = use_case.spec.event_schema, use_case.spec.label
    keys = [] if s.event_id.derive_from else [s.event_id.column]
    order = [*keys, *s.entities, *s.values, *s.extras]
    rules: dict[str, list[str]] = {}
    for rule in s.rules:
        rules.setdefault(rule.column, []).append(_rule_reason(rule))
    out: list[str] = []
    for col in order:
        typ = use_case.columns[col]
        implied = ["null"]
        if typ in ("int", "float", "datetime"):
            implied.append("unparseable")
        if typ == "int":
            implied.append("not an integer")
        out += [f"{col}: {r}" for r in implied + rules.get(col, [])]
    out.append(f"{label.column}: null")
    out.append(
        f"{label.column}: not 0/1" if label.task == "binary" else f"{label.column}: unparseable"
    )
    out += [f"{s.event_time}: {r}" for r in ("null", "unparseable", "outside partition day")]
    out += [f"{s.event_time}: {r}" for r in rules.get(s.event_time, [])]
    out.append(f"{s.event_id.column}: duplicate")
    return out


def first_day(use_case: UseCase, settings: ResolvedSettings) -> pd.DataFrame:
    """The raw events of the first day of the use case's range, from its default source."""
    source = use_case.spec.source
    day = settings.start_date
    if source.default == "files":
        from ml_platform.data.sources import read_file, source_file

        return read_file(source_file(settings.source_dir, day))
    return use_case.hook(getattr(source, source.default))(day, settings)


def _json_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def example_request(use_case: UseCase, settings: ResolvedSettings | None = None) -> dict[str, Any]:
    """The first event of the first day (by time, then id), request fields only, as JSON."""
    settings = settings or resolve_settings(use_case)
    s = use_case.spec.event_schema
    frame = first_day(use_case, settings)
    if frame.empty:
        raise ValueError(f"use case {use_case.name!r}: no events on {settings.start_date}")
    order = [c for c in (s.event_time, s.event_id.column) if c in frame.columns]
    first = frame.sort_values(order, kind="stable").iloc[0]  # the platform's event order
    return {col: _json_value(first[col]) for col in s.request}


def catalog_entry(use_case: UseCase) -> dict[str, Any]:
    """One row of ``ml-platform use-cases``: what it is, what it serves, what to send."""
    values = (
        use_case.name,
        str(use_case.folder),
        use_case.task,
        use_case.entities,
        len(use_case.features),
        use_case.model_name,
        use_case.service,
        example_request(use_case),
    )
    return dict(zip(CATALOG_KEYS, values, strict=True))
