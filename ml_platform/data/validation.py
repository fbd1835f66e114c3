"""Validation of raw transactions against the contract, with a quarantine for bad rows.

Why this shape: one bad row must never sink a day of good ones, and every rejected row must
say which rule it broke. ``validate_transactions`` therefore parses each contract column
leniently (vectorised, strings in numeric columns become "unparseable", not an exception),
evaluates named rules as boolean masks, sends failing rows to the quarantine with every
failed rule in ``reason`` ("; "-joined), and normalises the rest to the contract dtypes.
The good rows are then checked once more against the pandera schema built from the
contract (``transaction_schema``), so a bug in the masks cannot let a bad row through.

Rules (the ``reason`` strings, ``<column>: <rule>``):

* ``<col>: null`` - a required value is missing;
* ``<col>: unparseable`` - not a number / not an ISO-8601 timestamp;
* ``<id col>: not an integer`` - fractional or non-finite id;
* ``<id col>: negative``;
* ``tx_amount: not finite`` (inf) and ``tx_amount: negative``;
* ``tx_fraud: not 0/1``;
* ``tx_datetime: outside partition day`` - not in ``[day 00:00, day + 1 00:00)``;
* ``transaction_id: duplicate`` - among rows that pass every other rule, the first
  occurrence in input order is kept and later copies are quarantined (so a bad first copy
  does not cost the good one).

Time zones: tz-aware timestamps are converted to UTC and made naive. A missing required
column is not a row problem: it raises ``ValueError`` naming the column.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

import numpy as np
import pandas as pd

from ml_platform.data import contract as c

REASON = "reason"
PARTITION_DATE = "partition_date"
ID_COLUMNS = (c.TRANSACTION_ID, c.CUSTOMER_ID, c.TERMINAL_ID)
_MAX_EXACT_INT = 2**53  # ids parsed through float64 must stay exact


class MissingColumnError(ValueError):
    """A required contract column is absent: the whole partition is unusable."""


def check_columns(df: pd.DataFrame) -> None:
    missing = [col for col in c.RAW_COLUMNS if col not in df.columns]
    if missing:
        raise MissingColumnError(
            f"missing required column(s) {', '.join(missing)}; "
            f"the contract needs {', '.join(c.RAW_COLUMNS)} (got {', '.join(map(str, df.columns))})"
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


def _day_bounds(day: date | str) -> tuple[pd.Timestamp, pd.Timestamp]:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    if isinstance(d, datetime):
        d = d.date()
    start = pd.Timestamp(d)
    return start, start + pd.Timedelta(days=1)


def rule_masks(df: pd.DataFrame, day: date | str) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Failure mask per rule name, and the contract columns parsed (invalid cells are NaN).

    Duplicates are not included: they depend on which rows survive the other rules.
    """
    check_columns(df)
    masks: dict[str, np.ndarray] = {}
    parsed: dict[str, pd.Series] = {}
    for col in ID_COLUMNS:
        values, null, bad = _numeric(df[col])
        masks[f"{col}: null"] = null
        masks[f"{col}: unparseable"] = bad
        v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = ~(null | bad)
        if pd.api.types.is_integer_dtype(values.dtype):  # exact already, any size
            integral = ok
        else:
            with np.errstate(invalid="ignore"):
                integral = np.isfinite(v) & (np.floor(v) == v) & (np.abs(v) < _MAX_EXACT_INT)
        masks[f"{col}: not an integer"] = ok & ~integral
        masks[f"{col}: negative"] = ok & integral & (v < 0)
        parsed[col] = values

    values, null, bad = _numeric(df[c.TX_AMOUNT])
    v = values.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ~(null | bad)
    masks[f"{c.TX_AMOUNT}: null"] = null
    masks[f"{c.TX_AMOUNT}: unparseable"] = bad
    masks[f"{c.TX_AMOUNT}: not finite"] = ok & ~np.isfinite(v)
    masks[f"{c.TX_AMOUNT}: negative"] = ok & (v < 0)
    parsed[c.TX_AMOUNT] = values

    values, null, bad = _numeric(df[c.TX_FRAUD])
    v = values.to_numpy(dtype=np.float64, na_value=np.nan)
    masks[f"{c.TX_FRAUD}: null"] = null
    masks[f"{c.TX_FRAUD}: not 0/1"] = ~null & ~((v == 0) | (v == 1))
    parsed[c.TX_FRAUD] = values

    ts, null, bad = _datetimes(df[c.TX_DATETIME])
    lo, hi = _day_bounds(day)
    masks[f"{c.TX_DATETIME}: null"] = null
    masks[f"{c.TX_DATETIME}: unparseable"] = bad
    masks[f"{c.TX_DATETIME}: outside partition day"] = (
        ~(null | bad) & ~((ts >= lo) & (ts < hi)).to_numpy()
    )
    parsed[c.TX_DATETIME] = ts
    return masks, pd.DataFrame(parsed, index=df.index)


def _reasons(masks: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """'; '-joined failed rule names for the selected rows (only bad rows: cheap)."""
    out = np.full(len(rows), "", dtype=object)
    for name, mask in masks.items():
        hit = mask[rows]
        if hit.any():
            out[hit] = out[hit] + np.where(out[hit] == "", "", "; ") + name
    return out


def validate_transactions(df: pd.DataFrame, day: date | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split one day of raw rows into (valid rows in contract dtypes, quarantined rows).

    ``valid + quarantined == input`` row for row. The valid frame has the contract columns
    first (int64, datetime64[ns], float64, int8) then any extra columns; the quarantine has
    the contract columns as text (the value received), extras as text, ``reason`` and
    ``partition_date``. No wall-clock stamp: re-validating a day must give identical output
    (the Dagster run records when it happened).
    """
    df = df.reset_index(drop=True)  # positional alignment even for odd input indexes
    masks, parsed = rule_masks(df, day)
    iso = _day_bounds(day)[0].date().isoformat()
    bad = np.zeros(len(df), bool)
    for mask in masks.values():
        bad |= mask
    dup = np.zeros(len(df), bool)
    ids = parsed[c.TRANSACTION_ID]
    dup[~bad] = ids[~bad].duplicated(keep="first").to_numpy()
    masks[f"{c.TRANSACTION_ID}: duplicate"] = dup
    bad |= dup

    good = ~bad
    extras = [col for col in df.columns if col not in c.RAW_COLUMNS]
    valid = pd.DataFrame(
        {col: parsed[col][good].astype(dtype) for col, dtype in c.RAW_COLUMNS.items()}
    )
    for col in extras:
        valid[col] = df[col][good]
    valid = valid.reset_index(drop=True)

    rows = np.flatnonzero(bad)
    quarantine = _quarantine_frame(df.iloc[rows], extras)
    quarantine[REASON] = pd.array(_reasons(masks, rows), dtype="string")
    quarantine[PARTITION_DATE] = pd.array([iso] * len(rows), dtype="string")

    transaction_schema(iso).validate(valid)
    return valid, quarantine


def _quarantine_frame(rows: pd.DataFrame, extras: list[str]) -> pd.DataFrame:
    """Bad rows as text, so any garbage can be stored with one fixed Parquet schema."""
    out = {}
    for col in [*c.RAW_COLUMNS, *extras]:
        s = rows[col]
        text = s.astype("string")
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            text = text.where(s.notna(), None)
        out[col] = text.reset_index(drop=True)
    return pd.DataFrame(out, columns=[*c.RAW_COLUMNS, *extras]).astype("string")


def reason_counts(quarantine: pd.DataFrame) -> dict[str, int]:
    """How many quarantined rows failed each rule (a row may count for several)."""
    if quarantine.empty:
        return {}
    parts = quarantine[REASON].str.split("; ").explode()
    return {str(k): int(v) for k, v in parts.value_counts().sort_index().items()}


@lru_cache(maxsize=512)
def transaction_schema(day: str | None = None):
    """The pandera schema of valid raw transactions (contract dtypes and value rules).

    With ``day`` (ISO date) it also checks that every timestamp falls inside that day.
    Extra columns are allowed. Imported lazily: pandera costs ~2 s to import.
    """
    import pandera.pandas as pa

    checks = []
    if day is not None:
        lo, hi = _day_bounds(day)
        checks.append(
            pa.Check(
                lambda d: (d[c.TX_DATETIME] >= lo) & (d[c.TX_DATETIME] < hi),
                name="tx_datetime inside partition day",
                error=f"tx_datetime outside partition day {day}",
            )
        )
    ids = {
        col: pa.Column("int64", pa.Check.ge(0), nullable=False, unique=col == c.TRANSACTION_ID)
        for col in ID_COLUMNS
    }
    return pa.DataFrameSchema(
        {
            c.TRANSACTION_ID: ids[c.TRANSACTION_ID],
            c.TX_DATETIME: pa.Column("datetime64[ns]", nullable=False),
            c.CUSTOMER_ID: ids[c.CUSTOMER_ID],
            c.TERMINAL_ID: ids[c.TERMINAL_ID],
            c.TX_AMOUNT: pa.Column(
                "float64",
                [pa.Check.ge(0), pa.Check(np.isfinite, name="finite")],
                nullable=False,
            ),
            c.TX_FRAUD: pa.Column("int8", pa.Check.isin([0, 1]), nullable=False),
        },
        checks=checks,
        strict=False,
        ordered=False,
        name="raw_transactions",
    )
