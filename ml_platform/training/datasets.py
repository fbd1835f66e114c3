"""Training data: time windows, matured labels, the label-delay gap and leakage guards.

A fraud label is known only ``label_delay`` days after the transaction. At the end of day
``as_of`` the newest labelled day is therefore ``as_of - label_delay``; training and
validation use only those days, and a validation window is separated from the training
window by ``label_delay`` days, exactly as a deployed model is separated from its test days.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ml_platform.data import lake
from ml_platform.data.contract import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)

FEATURES_TABLE = "transaction_features"
TRANSACTIONS_TABLE = "validated_transactions"
#: Transaction columns kept next to the features (ids for metrics, the label).
LABEL_COLUMNS = [TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD]


class LeakageError(AssertionError):
    """Training data uses information not available at prediction time."""


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@dataclass(frozen=True)
class Windows:
    """A training window and a later validation (or test) window, both inclusive."""

    train_start: date
    train_end: date
    valid_start: date
    valid_end: date
    label_delay: int = 7

    def __post_init__(self) -> None:
        if self.label_delay < 0:
            raise ValueError(f"label_delay: must be >= 0, got {self.label_delay}")
        check_windows(
            self.train_start, self.train_end, self.valid_start, self.valid_end, self.label_delay
        )

    @property
    def train_days(self) -> list[date]:
        return _days(self.train_start, self.train_end)

    @property
    def valid_days(self) -> list[date]:
        return _days(self.valid_start, self.valid_end)

    def as_dict(self) -> dict[str, str | int]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()}


#: How ``check_windows`` names each bound in its errors (the dataclass field names).
FIELD_NAMES = {
    "train_start": "train_start",
    "train_end": "train_end",
    "valid_start": "valid_start",
    "valid_end": "valid_end",
    "label_delay": "label_delay",
}


def check_windows(
    train_start: date,
    train_end: date,
    valid_start: date,
    valid_end: date,
    label_delay: int,
    names: dict[str, str] = FIELD_NAMES,
) -> None:
    """Raise ValueError naming the offending bound (as ``names`` calls it: a field or a CLI
    flag) unless both windows are ordered and the later one starts after the label delay."""
    n = names
    if train_end < train_start:
        raise ValueError(
            f"{n['train_end']}: {train_end} is before {n['train_start']} {train_start}"
        )
    if valid_end < valid_start:
        raise ValueError(
            f"{n['valid_end']}: {valid_end} is before {n['valid_start']} {valid_start}"
        )
    if valid_start <= train_end:
        raise ValueError(
            f"{n['valid_start']}: the window {valid_start}..{valid_end} overlaps the training "
            f"window {train_start}..{train_end}"
        )
    gap = (valid_start - train_end).days - 1
    if gap < label_delay:
        raise ValueError(
            f"{n['valid_start']}: {valid_start} is {gap} day(s) after {n['train_end']} "
            f"{train_end}; the last training labels mature only after the label delay "
            f"({n['label_delay']} {label_delay} days), so the window may start "
            f"{train_end + timedelta(days=label_delay + 1)} at the earliest"
        )


def platform_windows(as_of: date, train_days: int, valid_days: int, label_delay: int) -> Windows:
    """Windows for a model trained at the end of day ``as_of``: only matured labels.

    The validation window is the newest ``valid_days`` matured days; training ends
    ``label_delay`` days before it.
    """
    valid_end = as_of - timedelta(days=label_delay)
    valid_start = valid_end - timedelta(days=valid_days - 1)
    train_end = valid_start - timedelta(days=label_delay + 1)
    train_start = train_end - timedelta(days=train_days - 1)
    return Windows(train_start, train_end, valid_start, valid_end, label_delay)


def inner_validation_windows(train_start: date, train_end: date, label_delay: int) -> Windows:
    """The protocol shifted back: fit on earlier days, validate on the training window.

    Used to tune (early stopping, model choice) for a given training window without ever
    touching the days after it: the inner training window has the same length and ends
    ``label_delay`` days before ``train_start``.
    """
    n = (train_end - train_start).days + 1
    inner_end = train_start - timedelta(days=label_delay + 1)
    return Windows(
        inner_end - timedelta(days=n - 1), inner_end, train_start, train_end, label_delay
    )


def matured_until(as_of: date, label_delay: int) -> date:
    """The newest day whose labels are known at the end of ``as_of``."""
    return as_of - timedelta(days=label_delay)


def assert_labels_matured(df: pd.DataFrame, as_of: date, label_delay: int) -> None:
    """Refuse training rows whose label was not yet known at ``as_of``."""
    if df.empty:
        return
    newest = df[TX_DATETIME].max().normalize().date()
    limit = matured_until(as_of, label_delay)
    if newest > limit:
        raise LeakageError(
            f"{TX_DATETIME}: training rows up to {newest}, but labels are only known up to "
            f"{limit} at {as_of} with a {label_delay}-day delay"
        )


def join_labels(features: pd.DataFrame, transactions: pd.DataFrame) -> pd.DataFrame:
    """Features + the transaction columns needed for labels and metrics, one row each."""
    if TRANSACTION_ID not in features.columns:
        raise ValueError(f"features.{TRANSACTION_ID}: column required")
    missing = [c for c in LABEL_COLUMNS if c not in transactions.columns]
    if missing:
        raise ValueError(f"transactions.{missing[0]}: column required")
    tx = transactions[LABEL_COLUMNS]
    feats = features.drop(columns=[c for c in LABEL_COLUMNS[1:] if c in features.columns])
    out = tx.merge(feats, on=TRANSACTION_ID, how="inner", validate="one_to_one")
    if len(out) != len(features):
        raise ValueError(
            f"{TRANSACTION_ID}: {len(features) - len(out)} feature rows have no transaction"
        )
    out[TX_FRAUD] = out[TX_FRAUD].astype(np.int8)
    return out.sort_values([TX_DATETIME, TRANSACTION_ID], kind="stable", ignore_index=True)


def load_labeled(lake_dir: Path, days: list[date]) -> pd.DataFrame:
    """Features and labels for ``days`` from the lake (both tables must hold each day)."""
    feats = lake.read_partitions(lake_dir, FEATURES_TABLE, days)
    tx = lake.read_partitions(lake_dir, TRANSACTIONS_TABLE, days)
    return join_labels(feats, tx)


def split(df: pd.DataFrame, windows: Windows) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of the training window and of the validation window."""
    day = df[TX_DATETIME].dt.normalize()
    train = df[
        (day >= pd.Timestamp(windows.train_start)) & (day <= pd.Timestamp(windows.train_end))
    ]
    valid = df[
        (day >= pd.Timestamp(windows.valid_start)) & (day <= pd.Timestamp(windows.valid_end))
    ]
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def dataset_digest(df: pd.DataFrame) -> str:
    """A content digest of the whole frame (row order and column names included)."""
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()[:16]


def check_point_in_time(
    build_features: Callable[..., pd.DataFrame],
    transactions: pd.DataFrame,
    cutoff: pd.Timestamp,
    label_delay: int,
) -> None:
    """Prove a feature builder uses neither the future nor immature labels.

    Two perturbations that must not change any feature of a transaction at or before
    ``cutoff``: deleting every later transaction, and flipping every label too recent to be
    known (transactions from day ``cutoff - label_delay + 1`` on). Raises
    :class:`LeakageError` naming the columns that moved.
    """
    cutoff = pd.Timestamp(cutoff)
    tx = transactions.sort_values(TX_DATETIME, kind="stable", ignore_index=True)
    base = build_features(tx, label_delay_days=label_delay).set_index(TRANSACTION_ID)
    past = tx[TX_DATETIME] <= cutoff
    ids = tx.loc[past, TRANSACTION_ID]

    truncated = build_features(tx[past].reset_index(drop=True), label_delay_days=label_delay)
    _compare(base, truncated.set_index(TRANSACTION_ID), ids, "future transactions")

    recent = tx[TX_DATETIME].dt.normalize() >= cutoff.normalize() - pd.Timedelta(
        days=label_delay - 1
    )
    flipped = tx.copy()
    flipped.loc[recent, TX_FRAUD] = 1 - flipped.loc[recent, TX_FRAUD]
    relabeled = build_features(flipped, label_delay_days=label_delay)
    _compare(base, relabeled.set_index(TRANSACTION_ID), ids, "labels not yet matured")


def _compare(base: pd.DataFrame, other: pd.DataFrame, ids: pd.Series, what: str) -> None:
    a = base.loc[ids.to_numpy()]
    b = other.reindex(ids.to_numpy())[a.columns]
    bad = [
        col
        for col in a.columns
        if not np.allclose(
            a[col].to_numpy(dtype=float), b[col].to_numpy(dtype=float), equal_nan=True
        )
    ]
    if bad:
        raise LeakageError(f"features depend on {what}: {', '.join(bad)}")
