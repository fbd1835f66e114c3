"""Training data: time windows, matured labels, the label-delay gap and leakage guards.

A label is known only ``label_delay`` days after the event. At the end of day ``as_of`` the
newest labelled day is therefore ``as_of - label_delay``; training and validation use only
those days, and a validation window is separated from the training window by
``label_delay`` days, exactly as a deployed model is separated from its test days.

Every column (event id, event time, entity keys, values, label) comes from the use case's
declaration (:class:`Roles`); without one, the platform's flagship use case is meant.
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
from ml_platform.data.validation import DTYPES, default_use_case
from ml_platform.use_cases.loader import UseCase

FEATURES_TABLE = "transaction_features"
TRANSACTIONS_TABLE = "validated_transactions"


@dataclass(frozen=True)
class Roles:
    """The columns training reads, by role, as a use case declares them."""

    event_id: str
    event_time: str
    entities: tuple[str, ...]
    values: tuple[str, ...]
    label: str
    task: str

    @classmethod
    def of(cls, use_case: UseCase | None = None) -> Roles:
        """The roles of ``use_case`` (default: the platform's flagship use case)."""
        uc = use_case or default_use_case()
        s = uc.spec.event_schema
        return cls(
            s.event_id.column,
            s.event_time,
            tuple(s.entities),
            tuple(s.values),
            uc.spec.label.column,
            uc.spec.label.task,
        )

    @property
    def label_columns(self) -> list[str]:
        """Event columns kept next to the features (ids for metrics, the label)."""
        return [self.event_id, self.event_time, *self.entities, *self.values, self.label]


#: The flagship use case's columns kept next to the features.
LABEL_COLUMNS = Roles.of().label_columns


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


def assert_labels_matured(
    df: pd.DataFrame, as_of: date, label_delay: int, *, use_case: UseCase | None = None
) -> None:
    """Refuse training rows whose label was not yet known at ``as_of``."""
    if df.empty:
        return
    time = Roles.of(use_case).event_time
    newest = df[time].max().normalize().date()
    limit = matured_until(as_of, label_delay)
    if newest > limit:
        raise LeakageError(
            f"{time}: training rows up to {newest}, but labels are only known up to "
            f"{limit} at {as_of} with a {label_delay}-day delay"
        )


def join_labels(
    features: pd.DataFrame, transactions: pd.DataFrame, *, use_case: UseCase | None = None
) -> pd.DataFrame:
    """Features + the event columns needed for labels and metrics, one row each."""
    r = Roles.of(use_case)
    keep = r.label_columns
    if r.event_id not in features.columns:
        raise ValueError(f"features.{r.event_id}: column required")
    missing = [c for c in keep if c not in transactions.columns]
    if missing:
        raise ValueError(f"transactions.{missing[0]}: column required")
    tx = transactions[keep]
    feats = features.drop(columns=[c for c in keep[1:] if c in features.columns])
    out = tx.merge(feats, on=r.event_id, how="inner", validate="one_to_one")
    if len(out) != len(features):
        raise ValueError(f"{r.event_id}: {len(features) - len(out)} feature rows have no event")
    out[r.label] = out[r.label].astype(DTYPES[r.task])
    return out.sort_values([r.event_time, r.event_id], kind="stable", ignore_index=True)


def load_labeled(
    lake_dir: Path,
    days: list[date],
    *,
    use_case: UseCase | None = None,
    features_table: str = FEATURES_TABLE,
    events_table: str = TRANSACTIONS_TABLE,
) -> pd.DataFrame:
    """Features and labels for ``days`` from the lake (both tables must hold each day)."""
    feats = lake.read_partitions(lake_dir, features_table, days)
    tx = lake.read_partitions(lake_dir, events_table, days)
    return join_labels(feats, tx, use_case=use_case)


def split(
    df: pd.DataFrame, windows: Windows, *, use_case: UseCase | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of the training window and of the validation window."""
    day = df[Roles.of(use_case).event_time].dt.normalize()
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
    *,
    use_case: UseCase | None = None,
) -> None:
    """Prove a feature builder uses neither the future nor immature labels.

    Two perturbations that must not change any feature of a transaction at or before
    ``cutoff``: deleting every later transaction, and flipping every label too recent to be
    known (events from day ``cutoff - label_delay + 1`` on; a binary label is flipped, a
    numeric one shifted by one). Raises :class:`LeakageError` naming the columns that moved.
    """
    r = Roles.of(use_case)
    cutoff = pd.Timestamp(cutoff)
    tx = transactions.sort_values(r.event_time, kind="stable", ignore_index=True)
    base = build_features(tx, label_delay_days=label_delay).set_index(r.event_id)
    past = tx[r.event_time] <= cutoff
    ids = tx.loc[past, r.event_id]

    truncated = build_features(tx[past].reset_index(drop=True), label_delay_days=label_delay)
    _compare(base, truncated.set_index(r.event_id), ids, "future transactions")

    recent = tx[r.event_time].dt.normalize() >= cutoff.normalize() - pd.Timedelta(
        days=label_delay - 1
    )
    flipped = tx.copy()
    old = flipped.loc[recent, r.label]
    flipped.loc[recent, r.label] = 1 - old if r.task == "binary" else old + 1.0
    relabeled = build_features(flipped, label_delay_days=label_delay)
    _compare(base, relabeled.set_index(r.event_id), ids, "labels not yet matured")


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
