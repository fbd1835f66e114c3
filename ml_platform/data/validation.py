"""Validation of a use case's raw events against its declared schema, with a quarantine.

Why this shape: one bad row must never sink a day of good ones, and every rejected row must
say which rule it broke. ``validate_events`` therefore parses each declared column leniently
(vectorised, strings in numeric columns become "unparseable", not an exception), evaluates
named rules as boolean masks, sends failing rows to the quarantine with every failed rule in
``reason`` ("; "-joined), and normalises the rest to the declared dtypes. The good rows are
then checked once more against the pandera schema built from the same declaration
(``event_schema``), so a bug in the masks cannot let a bad row through.

Nothing here is written for one use case: the required columns, their dtypes, the rules and
their reason strings come from the use case's event schema and label
(``use_cases.derive.column_checks``), derived once per use case and cached, since validation
runs per partition. Without ``use_case`` the platform's flagship (fraud) is meant.

Rules (the ``reason`` strings, ``<column>: <rule>``, in the order of ``column_checks``):

* ``<col>: null`` - a required value is missing;
* ``<col>: unparseable`` - not a number / not an ISO-8601 timestamp;
* ``<int col>: not an integer`` - fractional, non-finite or beyond 2**53 when read as float;
* the declared rules: ``negative``, ``not finite``, ``below <min>``, ``above <max>``,
  ``outside [<min>, <max>]``, ``not one of <values>``;
* the label: ``not 0/1`` (binary; text counts too), ``unparseable`` / ``not finite``
  (regression);
* ``<event time>: outside partition day`` - not in ``[day 00:00, day + 1 00:00)``;
* a per-row label time (``label.known_at``): ``known before its event`` (at or before the
  event time: a label the prediction could already see) and ``known later than
  known_within`` (after the event time + ``known_within``: beyond what the online state
  keeps); judged where both times parse;
* ``<event id>: duplicate`` - among rows that pass every other rule, the first occurrence
  in input order is kept and later copies are quarantined (so a bad first copy does not
  cost the good one). A derived event id (``derive_from``) is a stable hash of its columns
  (``derive_event_ids``), so a repeated event is a duplicate there too.

Time zones: tz-aware timestamps are converted to UTC and made naive (every datetime
column alike: the event time and the extras). A missing required column is not a row
problem: it raises ``MissingColumnError`` naming the column.

Side tables (``validate_side_rows``) are checked the same way with their own reasons
(``derive.side_table_checks``): keys non-null and typed, the time parseable and inside the
partition day, value columns numeric where given (a missing value is allowed: the as-of
join falls back to its default), and one row per key and time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.use_cases.derive import (
    DUPLICATE,
    KNOWN_BEFORE_EVENT,
    KNOWN_TOO_LATE,
    OUTSIDE_DAY,
    ColumnChecks,
    column_checks,
    rule_reason,
    side_table_checks,
    side_table_duplicate_reason,
)
from ml_platform.use_cases.loader import PACKAGE_ROOT, UseCase, load_use_case
from ml_platform.use_cases.spec import Rule

REASON = "reason"
PARTITION_DATE = "partition_date"
#: The use case meant when none is given: the platform's flagship.
DEFAULT_USE_CASE = "fraud"
#: The pandas dtype each declared type (or label task) is stored as in the lake.
DTYPES = {
    "int": "int64",
    "float": "float64",
    "string": "string",
    "datetime": "datetime64[ns]",
    "binary": "int8",
    "regression": "float64",
}
_MAX_EXACT_INT = 2**53  # ids parsed through float64 must stay exact
_MAX_CONTRACTS = 64


class MissingColumnError(ValueError):
    """A required column of the schema is absent: the whole partition is unusable."""


@lru_cache(maxsize=1)
def default_use_case() -> UseCase:
    """The package's flagship use case, loaded once (its folder only: no discovery)."""
    return load_use_case(PACKAGE_ROOT / DEFAULT_USE_CASE)


class EventContract:
    """What validation needs of one use case, derived once from its declaration.

    ``required``: the columns a raw partition must carry -> dtype (declaration order, label
    last); ``columns``: the declared columns of a valid row -> dtype (with a derived id).
    """

    def __init__(self, use_case: UseCase) -> None:
        s, label = use_case.spec.event_schema, use_case.spec.label
        self.use_case = use_case
        self.checks: tuple[ColumnChecks, ...] = tuple(column_checks(use_case))
        self.event_id = s.event_id.column
        self.derive_from: tuple[str, ...] = tuple(s.event_id.derive_from or ())
        self.event_time = s.event_time
        self.keep_extra_columns = s.keep_extra_columns
        #: column -> declared type, or the label's task
        self.kinds: dict[str, str] = {**use_case.columns, label.column: label.task}
        self.columns: dict[str, str] = {col: DTYPES[kind] for col, kind in self.kinds.items()}
        self.required = {
            col: dtype
            for col, dtype in self.columns.items()
            if not (self.derive_from and col == self.event_id)
        }
        self.schema: Callable[[str | None], Any] = lru_cache(maxsize=512)(self._schema)

    def _schema(self, day: str | None):
        import pandera.pandas as pa

        checks = []
        if day is not None:
            lo, hi = _day_bounds(day)
            t = self.event_time
            checks.append(
                pa.Check(
                    lambda d: (d[t] >= lo) & (d[t] < hi),
                    name=f"{t} inside partition day",
                    error=f"{t} outside partition day {day}",
                )
            )
        for k in self.checks:
            if k.known_within_ns is not None:
                checks.append(_label_time_check(pa, k, self.event_time))
        by_column = {k.column: _pandera_checks(pa, k) for k in self.checks}
        columns = {
            col: pa.Column(
                dtype,
                by_column.get(col) or None,
                nullable=False,
                unique=col == self.event_id,
            )
            for col, dtype in self.columns.items()
        }
        return pa.DataFrameSchema(
            columns,
            checks=checks,
            strict=False,
            ordered=False,
            name=self.use_case.qualified("valid_events"),
        )


_CONTRACTS: dict[int, EventContract] = {}


def event_contract(use_case: UseCase | None = None) -> EventContract:
    """The cached contract of ``use_case`` (default: the flagship); derived on first use."""
    uc = use_case or default_use_case()
    found = _CONTRACTS.get(id(uc))
    if found is None or found.use_case is not uc:
        if len(_CONTRACTS) >= _MAX_CONTRACTS:
            _CONTRACTS.pop(next(iter(_CONTRACTS)))
        found = _CONTRACTS[id(uc)] = EventContract(uc)
    return found


def _label_time_check(pa: Any, checks: ColumnChecks, event_time: str) -> Any:
    """The pandera check of a per-row label time: in ``(event time, + known_within]``."""
    k, within = checks.column, pd.Timedelta(checks.known_within_ns, unit="ns")
    return pa.Check(
        lambda d: (d[k] > d[event_time]) & (d[k] <= d[event_time] + within),
        name=f"{k} after {event_time}, within {within}",
        error=f"{k} not in ({event_time}, {event_time} + {within}]",
    )


def _pandera_checks(pa: Any, checks: ColumnChecks) -> list[Any]:
    """The pandera checks equal to a column's value rules (nulls and dtypes are the column's)."""
    out = []
    if checks.kind == "binary":
        out.append(pa.Check.isin([0, 1]))
    if checks.kind == "regression":
        out.append(pa.Check(np.isfinite, name="finite"))
    for rule in checks.rules:
        if rule.check == "non_negative":
            out.append(pa.Check.ge(0))
        elif rule.check == "finite":
            out.append(pa.Check(np.isfinite, name="finite"))
        elif rule.check == "range":
            if rule.min is not None:
                out.append(pa.Check.ge(rule.min))
            if rule.max is not None:
                out.append(pa.Check.le(rule.max))
        else:
            out.append(pa.Check.isin(_allowed(rule, checks.kind)))
    return out


def check_columns(df: pd.DataFrame, use_case: UseCase | None = None) -> None:
    """Raise ``MissingColumnError`` naming every required column ``df`` lacks."""
    required = event_contract(use_case).required
    missing = [col for col in required if col not in df.columns]
    if missing:
        raise MissingColumnError(
            f"missing required column(s) {', '.join(missing)}; "
            f"the contract needs {', '.join(required)} (got {', '.join(map(str, df.columns))})"
        )


def _numeric(s: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(float or int values, null mask, unparseable mask) for one raw column."""
    null = s.isna().to_numpy()
    if s.dtype == bool:
        s = s.astype(np.int64)
    values = s if pd.api.types.is_numeric_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
    bad = values.isna().to_numpy() & ~null
    return values, null, bad


def _datetimes(s: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    null = s.isna().to_numpy()
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        values = s.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        values = s
    else:
        values = pd.to_datetime(s, errors="coerce", format="ISO8601", utc=True)
        values = values.dt.tz_localize(None)
    values = values.astype("datetime64[ns]")
    bad = values.isna().to_numpy() & ~null
    return values, null, bad


def _strings(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(text values, null mask); whole floats (ints read with a gap) lose their ``.0``."""
    null = s.isna().to_numpy()
    if pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype=np.float64, na_value=np.nan)[~null]
        if np.isfinite(v).all() and (np.floor(v) == v).all() and (np.abs(v) < _MAX_EXACT_INT).all():
            s = s.astype("Int64")
    return s.astype("string"), null


def _day_bounds(day: date | str) -> tuple[pd.Timestamp, pd.Timestamp]:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    if isinstance(d, datetime):
        d = d.date()
    start = pd.Timestamp(d)
    return start, start + pd.Timedelta(days=1)


def _allowed(rule: Rule, kind: str) -> list[Any]:
    """A ``one_of`` rule's values in the column's parsed type."""
    values = rule.values or []
    if kind == "string":
        return [str(v) for v in values]
    if kind == "datetime":
        return [pd.Timestamp(v) for v in values]
    return [float(v) for v in values]


def _breaks(rule: Rule, kind: str, values: pd.Series, v: np.ndarray | None) -> np.ndarray:
    """Where a parsed value breaks a declared rule (only meaningful where it parsed)."""
    if rule.check == "one_of":
        allowed = _allowed(rule, kind)
        if v is not None:
            return ~np.isin(v, allowed)
        return ~values.isin(allowed).to_numpy(dtype=bool, na_value=False)
    assert v is not None  # the loader allows the other checks on numeric columns only
    with np.errstate(invalid="ignore"):
        if rule.check == "non_negative":
            return v < 0
        if rule.check == "finite":
            return ~np.isfinite(v)
        out = np.zeros(len(v), bool)
        if rule.min is not None:
            out |= v < rule.min
        if rule.max is not None:
            out |= v > rule.max
        return out


def _column_masks(
    s: pd.Series, checks: ColumnChecks, bounds: tuple[pd.Timestamp, pd.Timestamp]
) -> tuple[dict[str, np.ndarray], pd.Series]:
    """Failure mask per check of one column (named as reported), and its parsed values."""
    v = None
    if checks.kind == "datetime":
        values, null, bad = _datetimes(s)
        ok = ~(null | bad)
        found = {"null": null, "unparseable": bad}
        if checks.event_time:
            lo, hi = bounds
            found[OUTSIDE_DAY] = ok & ~((values >= lo) & (values < hi)).to_numpy()
    elif checks.kind == "string":
        values, null = _strings(s)
        ok = ~null
        found = {"null": null}
    else:
        values, null, bad = _numeric(s)
        v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = ~(null | bad)
        found = {"null": null, "unparseable": bad}
        if checks.kind == "binary":
            found["not 0/1"] = ~null & ~((v == 0) | (v == 1))
        elif checks.kind == "regression":
            found["not finite"] = ok & ~np.isfinite(v)
        elif checks.kind == "int":
            if pd.api.types.is_integer_dtype(values.dtype):  # exact already, any size
                integral = ok
            else:
                with np.errstate(invalid="ignore"):
                    integral = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < _MAX_EXACT_INT)
            found["not an integer"] = ok & ~integral
            ok = ok & integral
    if checks.known_within_ns is not None:  # judged against the event time, later
        found[KNOWN_BEFORE_EVENT] = found[KNOWN_TOO_LATE] = np.zeros(len(s), bool)
    masks = {f"{checks.column}: {name}": found[name] for name in checks.implied}
    for rule in checks.rules:  # one reason text is one rule: a repeated rule adds nothing
        masks[f"{checks.column}: {rule_reason(rule)}"] = ok & _breaks(rule, checks.kind, values, v)
    return masks, values


def rule_masks(
    df: pd.DataFrame, day: date | str, use_case: UseCase | None = None
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Failure mask per rule name, and the required columns parsed (invalid cells are NaN).

    Duplicates are not included: they depend on which rows survive the other rules.
    """
    contract = event_contract(use_case)
    check_columns(df, contract.use_case)
    masks, parsed = _parse_checked(df, contract.checks, _day_bounds(day))
    for checks in contract.checks:
        if checks.known_within_ns is not None:
            _label_time_masks(masks, parsed, checks, contract.event_time)
    return masks, pd.DataFrame({col: parsed[col] for col in contract.required}, index=df.index)


def _parse_checked(
    df: pd.DataFrame,
    checks: Iterable[ColumnChecks],
    bounds: tuple[pd.Timestamp, pd.Timestamp],
) -> tuple[dict[str, np.ndarray], dict[str, pd.Series]]:
    """Every checked column parsed, and the failure mask of each of its checks, in order."""
    masks: dict[str, np.ndarray] = {}
    parsed: dict[str, pd.Series] = {}
    for k in checks:
        found, parsed[k.column] = _column_masks(df[k.column], k, bounds)
        masks.update(found)
    return masks, parsed


def _label_time_masks(
    masks: dict[str, np.ndarray],
    parsed: dict[str, pd.Series],
    checks: ColumnChecks,
    event_time: str,
) -> None:
    """Fill a per-row label time's two masks (in their place) where both times parse."""
    known = parsed[checks.column].to_numpy(dtype="datetime64[ns]")
    at = parsed[event_time].to_numpy(dtype="datetime64[ns]")
    both = ~(np.isnat(known) | np.isnat(at))
    within = np.timedelta64(checks.known_within_ns, "ns")
    with np.errstate(invalid="ignore"):
        masks[f"{checks.column}: {KNOWN_BEFORE_EVENT}"] = both & (known <= at)
        masks[f"{checks.column}: {KNOWN_TOO_LATE}"] = both & (known > at + within)


def derive_event_ids(frame: pd.DataFrame, use_case: UseCase | None = None) -> pd.Series:
    """The ids of events whose schema derives its id: a stable hash of ``derive_from``.

    63 bits of pandas' row hash of those columns parsed as validation parses them (so the
    same event gets the same id in every run, from a lake row as from a request with ISO or
    tz-aware times); a string id is its 16-digit hex form. The values must be valid.
    """
    contract = event_contract(use_case)
    if not contract.derive_from:
        raise ValueError(
            f"use case {contract.use_case.name!r}: {contract.event_id} is given by the data, "
            "not derived (schema.event_id has no derive_from)"
        )
    typed = pd.DataFrame(
        {col: _typed(frame[col], contract.kinds[col]) for col in contract.derive_from},
        index=frame.index,
    )
    hashes = pd.util.hash_pandas_object(typed, index=False).to_numpy() >> np.uint64(1)
    if contract.columns[contract.event_id] == DTYPES["string"]:
        text = [f"{h:016x}" for h in hashes.tolist()]
        return pd.Series(text, index=frame.index, dtype="string", name=contract.event_id)
    return pd.Series(hashes.astype(np.int64), index=frame.index, name=contract.event_id)


def _typed(s: pd.Series, kind: str) -> pd.Series:
    """Valid raw values in their declared dtype, parsed the way validation parses them."""
    if kind == "datetime":
        return _datetimes(s)[0]
    if kind == "string":
        return _strings(s)[0]
    return _numeric(s)[0].astype(DTYPES[kind])


def _reasons(masks: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """'; '-joined failed rule names for the selected rows (only bad rows: cheap)."""
    out = np.full(len(rows), "", dtype=object)
    for name, mask in masks.items():
        hit = mask[rows]
        if hit.any():
            out[hit] = out[hit] + np.where(out[hit] == "", "", "; ") + name
    return out


def validate_events(
    df: pd.DataFrame, day: date | str, use_case: UseCase | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split one day of raw rows into (valid rows in the declared dtypes, quarantined rows).

    ``valid + quarantined == input`` row for row. The valid frame has the declared columns
    first (a derived id in the event id's place; fraud: int64, datetime64[ns], float64,
    int8) then any extra columns (when the schema keeps them); the quarantine has the
    required columns as text (the value received), extras as text, ``reason`` and
    ``partition_date``. No wall-clock stamp: re-validating a day must give identical output
    (the Dagster run records when it happened).
    """
    contract = event_contract(use_case)
    df = df.reset_index(drop=True)  # positional alignment even for odd input indexes
    masks, parsed = rule_masks(df, day, contract.use_case)
    iso = _day_bounds(day)[0].date().isoformat()
    bad = np.zeros(len(df), bool)
    for mask in masks.values():
        bad |= mask
    if contract.derive_from:  # only rows whose id columns passed can have an id
        ids = derive_event_ids(parsed[~bad], contract.use_case)
    else:
        ids = parsed[contract.event_id][~bad]
    repeated = ids.duplicated(keep="first").to_numpy()
    dup = np.zeros(len(df), bool)
    dup[~bad] = repeated
    masks[f"{contract.event_id}: {DUPLICATE}"] = dup
    bad |= dup

    good = ~bad
    declared = {*contract.required, contract.event_id}
    extras = (
        [col for col in df.columns if col not in declared] if contract.keep_extra_columns else []
    )
    kept = {col: parsed[col][good] for col in contract.required if col != contract.event_id}
    kept[contract.event_id] = ids[~repeated]  # indexed by input row, like the others
    valid = pd.DataFrame({col: kept[col].astype(dtype) for col, dtype in contract.columns.items()})
    for col in extras:
        valid[col] = df[col][good]
    valid = valid.reset_index(drop=True)

    rows = np.flatnonzero(bad)
    quarantine = _quarantine_frame(df.iloc[rows], [*contract.required, *extras])
    quarantine[REASON] = pd.array(_reasons(masks, rows), dtype="string")
    quarantine[PARTITION_DATE] = pd.array([iso] * len(rows), dtype="string")

    contract.schema(iso).validate(valid)
    return valid, quarantine


def _quarantine_frame(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Bad rows as text, so any garbage can be stored with one fixed Parquet schema."""
    out = {}
    for col in columns:
        s = rows[col]
        text = s.astype("string")
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            text = text.where(s.notna(), None)
        out[col] = text.reset_index(drop=True)
    return pd.DataFrame(out, columns=columns).astype("string")


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """How many quarantined rows failed each rule (a row may count for several)."""
    if quarantine.empty:
        return {}
    parts = quarantine[REASON].str.split("; ").explode()
    return {str(k): int(v) for k, v in parts.value_counts().sort_index().items()}


def event_schema(day: str | None = None, use_case: UseCase | None = None):
    """The pandera schema of valid raw events (declared dtypes and value rules), cached.

    With ``day`` (ISO date) it also checks that every event time falls inside that day.
    Extra columns are allowed. Imported lazily: pandera costs ~2 s to import.
    """
    return event_contract(use_case).schema(day)


#: The dtype of a side table's value column (a missing value is allowed: nullable ints).
_SIDE_VALUE_DTYPES = {"float": "float64", "int": "Int64"}


def validate_side_rows(
    df: pd.DataFrame, day: date | str, table: str, use_case: UseCase | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split one day of a side table's raw rows into (valid rows, quarantined rows).

    ``valid + quarantined == input`` row for row. The valid frame has the declared key,
    time and value columns only, in that order, in their dtypes (keys int64 or string,
    the time naive UTC, values float64 or nullable Int64); the quarantine has them as text
    with ``reason`` and ``partition_date``, like ``validate_events``'. Among rows that pass
    every other check the first row of a key and time is kept, later ones quarantined.
    """
    uc = use_case or default_use_case()
    tables = uc.spec.event_schema.side_tables
    if table not in tables:
        raise ValueError(
            f"use case {uc.name!r}: no side table {table!r} (declared: "
            f"{', '.join(tables) or 'none'})"
        )
    spec = tables[table]
    checks = side_table_checks(uc, table)  # a few objects: derived per call, not cached
    required = [k.column for k in checks]
    missing = [col for col in required if col not in df.columns]
    if missing:
        raise MissingColumnError(
            f"side table {table}: missing required column(s) {', '.join(missing)}; "
            f"it needs {', '.join(required)} (got {', '.join(map(str, df.columns))})"
        )
    df = df.reset_index(drop=True)
    masks, parsed = _parse_checked(df, checks, _day_bounds(day))
    bad = np.zeros(len(df), bool)
    for mask in masks.values():
        bad |= mask
    identity = pd.DataFrame({col: parsed[col] for col in [*spec.keys, spec.time]})
    dup = np.zeros(len(df), bool)
    dup[~bad] = identity[~bad].duplicated(keep="first").to_numpy()
    masks[side_table_duplicate_reason(uc, table)] = dup
    bad |= dup

    dtypes = {col: DTYPES[kind] for col, kind in spec.keys.items()}
    dtypes[spec.time] = DTYPES["datetime"]
    dtypes.update({col: _SIDE_VALUE_DTYPES[kind] for col, kind in spec.columns.items()})
    good = ~bad
    valid = pd.DataFrame(
        {col: parsed[col][good].astype(dtype) for col, dtype in dtypes.items()}
    ).reset_index(drop=True)
    rows = np.flatnonzero(bad)
    quarantine = _quarantine_frame(df.iloc[rows], required)
    quarantine[REASON] = pd.array(_reasons(masks, rows), dtype="string")
    iso = _day_bounds(day)[0].date().isoformat()
    quarantine[PARTITION_DATE] = pd.array([iso] * len(rows), dtype="string")
    return valid, quarantine


#: The flagship's names for the same functions (its events are card transactions).
validate_transactions = validate_events
transaction_schema = event_schema
