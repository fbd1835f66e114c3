"""What the platform derives from a declaration rather than writing it per use case.

Here: the checks and quarantine reasons validation gives (``<column>: <rule>``), an example request
(a real event of the use case's data, request fields only) and the catalogue row that
``ml-platform use-cases`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.use_cases.loader import UseCase, resolve_settings
from ml_platform.use_cases.spec import ResolvedSettings, Rule, duration_seconds

_RULE_REASONS = {"non_negative": "negative", "finite": "not finite"}
#: The reason of an event time outside its partition day, and of a repeated event id.
OUTSIDE_DAY = "outside partition day"
DUPLICATE = "duplicate"
#: The reasons of a per-row label time (``label.known_at``) its event cannot have.
KNOWN_BEFORE_EVENT = "known before its event"
KNOWN_TOO_LATE = "known later than known_within"
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


def rule_reason(rule: Rule) -> str:
    """The reason text of a declared rule (``negative``, ``below 1``, ``not one of a, b``)."""
    if rule.check in _RULE_REASONS:
        return _RULE_REASONS[rule.check]
    if rule.check == "one_of":
        return "not one of " + ", ".join(map(str, rule.values or []))
    if rule.max is None:
        return f"below {rule.min:g}"
    if rule.min is None:
        return f"above {rule.max:g}"
    return f"outside [{rule.min:g}, {rule.max:g}]"


@dataclass(frozen=True)
class ColumnChecks:
    """The checks of one column in evaluation order: those its type implies, then its rules.

    ``kind`` is the column's type (``int``, ``float``, ``string``, ``datetime``) or, for the
    label, its task (``binary``, ``regression``); ``event_time`` marks the partition column
    (a side table's time column too); ``known_within_ns`` marks the label's per-row time,
    which must fall in ``(event time, event time + known_within]``.
    """

    column: str
    kind: str
    implied: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    event_time: bool = False
    known_within_ns: int | None = None

    @property
    def reasons(self) -> list[str]:
        """``<column>: <rule>`` for every check, in order."""
        texts = [*self.implied, *map(rule_reason, self.rules)]
        return [f"{self.column}: {text}" for text in texts]


_IMPLIED = {
    "int": ("null", "unparseable", "not an integer"),
    "float": ("null", "unparseable"),
    "datetime": ("null", "unparseable"),
    "string": ("null",),
    "binary": ("null", "not 0/1"),
    "regression": ("null", "unparseable", "not finite"),
}


def column_checks(use_case: UseCase) -> list[ColumnChecks]:
    """Every column's checks, in the order validation evaluates and reports them.

    Types imply most of them (a missing value, an unparseable number or time, a fractional
    integer, a binary label outside 0/1, a non-finite regression label, a time outside the
    partition day); the declared rules add the rest. A derived event id has none: it is
    computed from columns checked themselves.
    """
    s, label = use_case.spec.event_schema, use_case.spec.label
    keys = [] if s.event_id.derive_from else [s.event_id.column]
    rules: dict[str, list[Rule]] = {}
    for rule in s.rules:
        rules.setdefault(rule.column, []).append(rule)
    out = []
    for col in [*keys, *s.entities, *s.values, *s.extras]:
        kind = use_case.columns[col]
        col_rules = tuple(rules.get(col, ()))
        if col == label.known_at and label.known_within is not None:
            implied = (*_IMPLIED[kind], KNOWN_BEFORE_EVENT, KNOWN_TOO_LATE)
            within = duration_seconds(label.known_within) * 10**9
            out.append(ColumnChecks(col, kind, implied, col_rules, known_within_ns=within))
            continue
        out.append(ColumnChecks(col, kind, _IMPLIED[kind], col_rules))
    out.append(ColumnChecks(label.column, label.task, _IMPLIED[label.task]))
    time_checks = (*_IMPLIED["datetime"], OUTSIDE_DAY)
    out.append(
        ColumnChecks(
            s.event_time, "datetime", time_checks, tuple(rules.get(s.event_time, ())), True
        )
    )
    return out


def quarantine_reasons(use_case: UseCase) -> list[str]:
    """Every reason a row of this use case can be quarantined for, in evaluation order.

    The column checks' reasons (a per-row label time's: known before its event, or later
    than ``known_within`` after it), then a repeated event id (judged among rows that pass
    them).
    """
    reasons = [r for checks in column_checks(use_case) for r in checks.reasons]
    return [*reasons, f"{use_case.spec.event_schema.event_id.column}: {DUPLICATE}"]


def side_table_checks(use_case: UseCase, table: str) -> list[ColumnChecks]:
    """A side table's checks: keys typed and present, a parseable time inside the
    partition day, value columns numeric where given. A missing value is allowed (the
    as-of join then falls back to its default), as a missing key or time is not."""
    spec = use_case.spec.event_schema.side_tables[table]
    out = [ColumnChecks(col, kind, _IMPLIED[kind]) for col, kind in spec.keys.items()]
    time_checks = (*_IMPLIED["datetime"], OUTSIDE_DAY)
    out.append(ColumnChecks(spec.time, "datetime", time_checks, event_time=True))
    for col, kind in spec.columns.items():
        implied = tuple(c for c in _IMPLIED[kind] if c != "null")
        out.append(ColumnChecks(col, kind, implied))
    return out


def side_table_duplicate_reason(use_case: UseCase, table: str) -> str:
    """Two rows of one key at one time: the as-of join could not tell which is known."""
    spec = use_case.spec.event_schema.side_tables[table]
    return f"{', '.join([*spec.keys, spec.time])}: {DUPLICATE}"


def side_table_reasons(use_case: UseCase, table: str) -> list[str]:
    """Every reason a row of a side table can be quarantined for, in evaluation order."""
    reasons = [r for checks in side_table_checks(use_case, table) for r in checks.reasons]
    return [*reasons, side_table_duplicate_reason(use_case, table)]


def first_day(use_case: UseCase, settings: ResolvedSettings) -> pd.DataFrame:
    """The raw events of the first day of the use case's range, from its default source."""
    from ml_platform.data.sources import read_events_day

    return read_events_day(use_case, settings.start_date, settings)


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
    return request_fields(use_case, first)


def request_fields(use_case: UseCase, event: pd.Series) -> dict[str, Any]:
    """An event's request fields (``schema.request``) as JSON values: what a client sends."""
    return {col: _json_value(event[col]) for col in use_case.spec.event_schema.request}


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
