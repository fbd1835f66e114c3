"""The single source of truth for every feature: entity, window, aggregate and label delay.

Both engines (``batch.py`` for training and batch scoring, ``online.py`` for serving) read
these definitions, so a feature is described exactly once. They are translated from a use
case's declaration (``ml_platform/use_cases/<name>/use_case.yaml``): a ``FeatureSet`` holds
the features plus the column roles the engines read (event id, event time, entity keys, value
and label columns), so the engines themselves name no column of any use case.

Semantics (time-based windows on the event time, in nanoseconds, never calendar days).
Events are ordered by ``(event time, event id)``: at equal timestamps the event with the
larger id arrives later, so it is not yet known when the smaller one is scored.

- ``window`` aggregates (no delay): the entity's events in ``(t - w, t]`` that came at or
  before the current one in event order, the current one included;
- ``delayed`` aggregates: the entity's events in ``(t - (d + w), t - d]`` where ``d`` is the
  label delay (a label is known ``d`` days after its event, so labels of events at or before
  ``t - d`` are known at ``t``); every tie at ``t - d`` counts;
- ``risk`` = positive labels / count, 0 when the window is empty; ``mean_amount`` likewise 0;
- ``fraud_count`` = known positives in the delayed window (not diluted by the negative events
  an entity had before it turned positive);
- ``days_since_fraud`` = ``(t - time of the newest positive in the delayed window) / 1 day``,
  ``d + w`` (in days) when the window holds none (a recent known positive = still positive);
- ``days_since_first_fraud`` = the same for the *oldest* positive in the window: a spell of
  positives lasts a limited time, so the age of its first known one says how far into it we are;
- ``fraud_share_since_first`` = positives in the window / the entity's events from the oldest
  of them up to ``t - d`` (0 when the window holds none): how much of the traffic since the
  spell began was positive, undiluted by the quiet weeks before it;
- ``fraud_mean_amount`` = mean value of the known positives in the window (0 when none);
- ``night``: hour <= NIGHT_LAST_HOUR; ``weekend``: Sat or Sun (of the event time, UTC).

``FEATURES``, ``FEATURE_COLUMNS``, ``FEATURE_VERSION`` and ``REQUIRED_COLUMNS`` are the fraud
use case's, loaded from its folder on first use (importing this module reads no file).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ml_platform.use_cases.loader import UseCase

Aggregate = Literal[
    "value",  # the request field itself
    "weekend",  # calendar flag from the event time
    "night",  # calendar flag from the event time
    "count",  # number of events in the window
    "mean_amount",  # mean of the value column in the window (0 when empty)
    "risk",  # mean label in the window (0 when empty); needs a label delay
    "amount_ratio",  # value / mean value of the window (1 when that mean is 0)
    "seconds_since_prev",  # seconds since the entity's previous event, capped at w
    "fraud_count",  # sum of the known labels in the window; needs a label delay
    "days_since_fraud",  # days from t back to the newest known positive (d + w if none)
    "days_since_first_fraud",  # days from t back to the oldest known positive in the window
    "fraud_share_since_first",  # positives / events since the window's oldest known positive
    "fraud_mean_amount",  # mean value of the known positives in the window (0 when none)
    "hour",  # hour of the day of the event time (0-23, UTC)
    "weekday",  # day of the week of the event time (0 = Monday, UTC)
    "min",  # smallest value (or label) in the window (0 when empty)
    "max",  # largest value (or label) in the window (0 when empty)
    "asof",  # a side-table column as known at t (``default`` when none within max_age)
]

#: Aggregates that read labels: only allowed on delayed windows.
LABEL_AGGREGATES = (
    "risk",
    "fraud_count",
    "days_since_fraud",
    "days_since_first_fraud",
    "fraud_share_since_first",
    "fraud_mean_amount",
)
#: Aggregates that read a value column (``FeatureDef.value``).
VALUE_AGGREGATES = ("value", "mean_amount", "amount_ratio", "fraud_mean_amount")
#: Aggregates of the event time alone.
CALENDAR_AGGREGATES = ("weekend", "night", "hour", "weekday")
#: Aggregates over a value column or the label, whichever the feature names.
EXTREMUM_AGGREGATES = ("min", "max")
#: Label aggregates that need a 0/1 label.
BINARY_LABEL_AGGREGATES = (
    "days_since_fraud",
    "days_since_first_fraud",
    "fraud_share_since_first",
    "fraud_mean_amount",
)

DAY_NS = 86_400 * 10**9
SECOND_NS = 10**9
NIGHT_LAST_HOUR = 6  # night: hour <= 6
#: The use case whose features ``FEATURES`` & co. are (the platform's default).
DEFAULT_USE_CASE = "fraud"
#: Fraud's declaration lists its 15 core features first, then the extra point-in-time ones.
_REQUIRED_COUNT = 15


@dataclass(frozen=True)
class FeatureDef:
    """One feature. ``delayed`` windows end ``label_delay_days`` before the event.

    ``entity`` is the entity-key column it aggregates over, ``window_ns`` its window (ns),
    ``value`` the value column it reads and ``label`` the label column (label aggregates).
    """

    name: str
    aggregate: Aggregate
    entity: str | None = None
    window_ns: int | None = None
    delayed: bool = False
    description: str = ""
    value: str | None = None
    label: str | None = None
    #: delayed windows of a label known at a per-row time: the column holding that time;
    #: the window then covers the events whose label became known in ``(t - w, t]``
    known_at: str | None = None
    #: ``asof``: the side table, ``(event column, table key)`` pairs, the value when no row
    #: is known within ``window_ns`` (the max age); ``value`` is the table's column
    table: str | None = None
    join: tuple[tuple[str, str], ...] | None = None
    default: float | None = None

    @property
    def window_days(self) -> int | float | None:
        """The window in days (whole days as an int): what ``days_since_*`` count in."""
        if self.window_ns is None:
            return None
        if self.window_ns % DAY_NS == 0:
            return self.window_ns // DAY_NS
        return self.window_ns / DAY_NS


@dataclass(frozen=True)
class SideTableDef:
    """A table joined as of the event time: a row describes ``time`` and is known from
    ``time + known_after_ns`` on; ``keys`` are its key columns (column, "int"|"string")."""

    name: str
    keys: tuple[tuple[str, str], ...]
    time: str
    columns: tuple[str, ...]
    known_after_ns: int = 0


@dataclass(frozen=True)
class FeatureSet:
    """A use case's features and the column roles the engines read: their whole input."""

    use_case: str
    event_id: str
    event_id_type: Literal["int", "string"]
    event_time: str
    #: entity-key column -> "int" or "string", in declaration order
    entities: tuple[tuple[str, str], ...]
    label: str
    label_task: Literal["binary", "regression"]
    features: tuple[FeatureDef, ...]
    side_tables: tuple[SideTableDef, ...] = ()
    #: a label known at a per-row time: its column, and the longest it takes after the event
    known_at: str | None = None
    known_within_ns: int | None = None

    def __post_init__(self) -> None:
        _check(self.features, self.label_task)
        _check_per_row(self)

    def side_table(self, name: str) -> SideTableDef:
        for table in self.side_tables:
            if table.name == name:
                return table
        raise KeyError(f"{self.use_case}: no side table {name!r}")

    @cached_property
    def columns(self) -> list[str]:
        """Feature names in output order."""
        return [f.name for f in self.features]

    @cached_property
    def entity_columns(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.entities)

    @cached_property
    def value_columns(self) -> tuple[str, ...]:
        """The event value columns some feature reads, in first-use order (an ``asof``
        feature's ``value`` is a side-table column, not one of the events)."""
        read = (f.value for f in self.features if f.value is not None and f.aggregate != "asof")
        return tuple(dict.fromkeys(read))

    @cached_property
    def reads_label(self) -> bool:
        return any(f.label is not None for f in self.features)

    @cached_property
    def join_columns(self) -> tuple[str, ...]:
        """Event columns the as-of joins read that are not entity keys, in first-use order."""
        joined = (c for f in self.features if f.join for c, _ in f.join)
        return tuple(c for c in dict.fromkeys(joined) if c not in self.entity_columns)

    @cached_property
    def input_columns(self) -> tuple[str, ...]:
        """The columns the batch engine needs."""
        label = (self.label,) if self.reads_label else ()
        known = (self.known_at,) if any(f.known_at for f in self.features) else ()
        return (
            self.event_id,
            self.event_time,
            *self.entity_columns,
            *self.value_columns,
            *self.join_columns,
            *label,
            *known,
        )

    @cached_property
    def version(self) -> str:
        """Deterministic hash of the definitions; the model registry records it."""
        return _version(self.features, self.event_time, self.event_id)

    def horizon_ns(self, label_delay_days: int) -> int:
        """How far back any feature looks (ns): bounds the online state and the look-back."""
        d = label_delay_days * DAY_NS

        def reach(f: FeatureDef) -> int:
            if f.known_at is not None:
                return f.window_ns + (self.known_within_ns or 0)
            return f.window_ns + (d if f.delayed else 0)

        return max(
            (reach(f) for f in self.features if f.window_ns and f.aggregate != "asof"),
            default=0,
        )

    def side_horizon_ns(self, table: str) -> int:
        """How far back the as-of joins of a side table look (ns): max age + publication."""
        known_after = self.side_table(table).known_after_ns
        ages = [f.window_ns for f in self.features if f.table == table]
        return max(ages, default=0) + known_after


def _check(features: tuple[FeatureDef, ...], label_task: str = "binary") -> None:
    """Refuse definitions the engines would compute wrongly, naming the feature."""
    names = set()
    for f in features:
        if f.name in names:
            raise ValueError(f"feature {f.name!r}: defined twice")
        names.add(f.name)
        if f.entity is not None and (f.window_ns is None or f.window_ns < 1):
            raise ValueError(f"feature {f.name!r}: window_ns must be >= 1")
        if f.aggregate in LABEL_AGGREGATES and not f.delayed:
            raise ValueError(
                f"feature {f.name!r}: {f.aggregate} reads labels, so it needs a label delay "
                "(delayed=True)"
            )
        if f.aggregate in LABEL_AGGREGATES and f.label is None:
            raise ValueError(f"feature {f.name!r}: {f.aggregate} needs its label column")
        if f.aggregate in BINARY_LABEL_AGGREGATES and label_task != "binary":
            raise ValueError(f"feature {f.name!r}: {f.aggregate} needs a binary label")
        if f.aggregate in VALUE_AGGREGATES and f.value is None:
            raise ValueError(f"feature {f.name!r}: {f.aggregate} needs its value column")
        if f.aggregate in EXTREMUM_AGGREGATES and (f.value is None) == (f.label is None):
            raise ValueError(f"feature {f.name!r}: {f.aggregate} needs a value or the label")
        if f.aggregate in EXTREMUM_AGGREGATES and f.label is not None and not f.delayed:
            raise ValueError(f"feature {f.name!r}: {f.aggregate} of the label needs delayed")
        if f.aggregate == "asof":
            if not (f.table and f.join and f.value and f.window_ns and f.default is not None):
                raise ValueError(
                    f"feature {f.name!r}: asof needs table, join, value, window_ns, default"
                )
            continue
        if f.entity is None and f.aggregate not in ("value", *CALENDAR_AGGREGATES):
            raise ValueError(f"feature {f.name!r}: {f.aggregate} needs an entity")


def _check_per_row(fs: FeatureSet) -> None:
    """Per-row label times need their column and bound; side tables must exist."""
    for f in fs.features:
        if f.known_at is not None and (
            f.known_at != fs.known_at or not f.delayed or fs.known_within_ns is None
        ):
            raise ValueError(
                f"feature {f.name!r}: known_at {f.known_at!r} needs a delayed window and the "
                "feature set's known_at column with known_within_ns"
            )
        if f.table is not None:
            fs.side_table(f.table)


def _version(features: tuple[FeatureDef, ...], event_time: str, event_id: str) -> str:
    payload = json.dumps(
        {
            "features": [_hashed(f) for f in features],
            "night_last_hour": NIGHT_LAST_HOUR,
            "order": f"{event_time},{event_id}",
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: fields added after the first registered models: hashed only when set, so the version of
#: a feature set that does not use them stays what it was
_OPTIONAL_FIELDS = ("known_at", "table", "join", "default")


def _hashed(f: FeatureDef) -> dict[str, Any]:
    fields = asdict(f)
    return {k: v for k, v in fields.items() if k not in _OPTIONAL_FIELDS or v is not None}


def feature_set(use_case: UseCase | str = DEFAULT_USE_CASE) -> FeatureSet:
    """The engines' view of a use case (a loaded one, or one by name: cached)."""
    if isinstance(use_case, str):
        return _named_feature_set(use_case)
    from ml_platform.use_cases.feature_port import to_feature_set

    return to_feature_set(use_case)


@cache
def _named_feature_set(name: str) -> FeatureSet:
    """A use case shipped in the package loads from its folder alone (no environment read);
    any other is found through the use-case folders."""
    from ml_platform.use_cases.feature_port import to_feature_set
    from ml_platform.use_cases.loader import (
        PACKAGE_ROOT,
        USE_CASE_FILE,
        get_use_case,
        load_use_case,
    )

    folder = PACKAGE_ROOT / name
    found = (folder / USE_CASE_FILE).is_file()
    return to_feature_set(load_use_case(folder) if found else get_use_case(name))


def horizon_days(label_delay_days: int, use_case: UseCase | str = DEFAULT_USE_CASE) -> int:
    """How far back any feature looks, in whole days (rounded up): the batch look-back."""
    return math.ceil(feature_set(use_case).horizon_ns(label_delay_days) / DAY_NS)


def check_label_delay(label_delay_days: int) -> int:
    """A delay of 0 would let a label be known at the instant of its event."""
    if int(label_delay_days) != label_delay_days or label_delay_days < 1:
        raise ValueError(f"label_delay_days: must be an integer >= 1, got {label_delay_days!r}")
    return int(label_delay_days)


# The default use case's definitions, read from its folder on first access (PEP 562).
FEATURES: tuple[FeatureDef, ...]
FEATURE_COLUMNS: list[str]
FEATURE_VERSION: str
REQUIRED_COLUMNS: list[str]
LAZY_NAMES = ("FEATURES", "FEATURE_COLUMNS", "FEATURE_VERSION", "REQUIRED_COLUMNS")


def __getattr__(name: str) -> Any:
    if name not in LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    fs = feature_set()
    return {
        "FEATURES": lambda: fs.features,
        "FEATURE_COLUMNS": lambda: fs.columns,
        "FEATURE_VERSION": lambda: fs.version,
        "REQUIRED_COLUMNS": lambda: fs.columns[:_REQUIRED_COUNT],
    }[name]()
