"""The declaration models of a use case: what ``use_case.yaml`` may say, field by field.

A use case is declared, not programmed: these pydantic models give every field its type
and its own limits (a window must parse and be positive, a metric must exist for the task),
so a mistake is reported with the field's path. What needs several fields at once (an
unknown column, a label read before it is known, a request field the schema lacks) is
checked by ``loader.load_use_case``. Nothing here names a column of any use case: the
models only describe *roles* (event id, event time, entity keys, values, label).

The same attributes are meant to be carried later by a Dagster component's ``defs.yaml``,
which is why they are plain YAML-friendly data (strings, numbers, lists, mappings).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: The finest time unit the feature engines compute windows in (seconds).
ENGINE_TIME_UNIT_SECONDS = 60
#: The longest look-back (window plus label delay) the engines keep state for (days).
MAX_HORIZON_DAYS = 400

_UNIT_SECONDS = {"s": 1, "min": 60, "h": 3600, "d": 86_400}
#: The word a window's unit becomes in a feature-name template (``{n}{unit}``).
UNIT_WORDS = {"s": "second", "min": "minute", "h": "hour", "d": "day"}
_DURATION = re.compile(r"^\s*(-?\d+)\s*([a-z]+)\s*$")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
_REFERENCE = re.compile(r"^[A-Za-z0-9_./-]+\.py:[A-Za-z_]\w*$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def parse_duration(text: str) -> tuple[int, str]:
    """``"30d"`` -> ``(30, "d")``; units ``s``, ``min``, ``h``, ``d`` (no ambiguous ``m``)."""
    match = _DURATION.match(str(text))
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 30d, 6h or 15min")
    number, unit = int(match.group(1)), match.group(2)
    if unit not in _UNIT_SECONDS:
        raise ValueError(f"{text!r}: unknown unit {unit!r} (use s, min, h or d)")
    return number, unit


def duration_seconds(text: str) -> int:
    number, unit = parse_duration(text)
    return number * _UNIT_SECONDS[unit]


def _window(text: str) -> str:
    """A window the engines can compute: positive and a whole number of engine time units."""
    seconds = duration_seconds(text)
    if seconds <= 0:
        raise ValueError(f"{text!r}: a window must be longer than zero")
    if seconds % ENGINE_TIME_UNIT_SECONDS:
        raise ValueError(
            f"{text!r}: not a multiple of the engines' time unit "
            f"({ENGINE_TIME_UNIT_SECONDS} s = 1 minute)"
        )
    if seconds > MAX_HORIZON_DAYS * 86_400:
        raise ValueError(
            f"{text!r}: longer than the {MAX_HORIZON_DAYS}-day horizon the engines keep"
        )
    return text.strip()


def _non_negative_duration(text: str) -> str:
    if duration_seconds(text) < 0:
        raise ValueError(f"{text!r}: must not be negative")
    return text.strip()


def _name(text: str) -> str:
    if not NAME_PATTERN.match(text):
        raise ValueError(f"{text!r}: use lower-case letters, digits and _ (starting with a letter)")
    return text


def camel_name(name: str) -> str:
    """``shop_events`` -> ``ShopEvents``: the class and model names derived from a name."""
    return "".join(part.capitalize() for part in name.split("_"))


def _reference(text: str) -> str:
    if not _REFERENCE.match(text):
        raise ValueError(
            f"{text!r}: expected 'file.py:function' (a file of the use-case folder) "
            "or 'package.module:function'"
        )
    return text


Window = Annotated[str, AfterValidator(_window)]
Duration = Annotated[str, AfterValidator(_non_negative_duration)]
Name = Annotated[str, AfterValidator(_name)]
Reference = Annotated[str, AfterValidator(_reference)]
KeyType = Literal["int", "string"]
ValueType = Literal["float", "int"]


class _Strict(BaseModel):
    """Unknown keys are mistakes (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- 1. event schema ----------------------------------------------------------------------


class EventId(_Strict):
    """The event's unique id: a column of the data, or derived from columns when it has none."""

    column: str
    type: KeyType = "int"
    derive_from: list[str] | None = Field(
        None, description="Columns whose values identify the event; the id is their hash."
    )


class Rule(_Strict):
    """A validation rule beyond those the types imply; its quarantine reason is derived."""

    column: str
    check: Literal["non_negative", "finite", "range", "one_of"]
    min: float | None = None
    max: float | None = None
    values: list[int | float | str] | None = None


class SideTable(_Strict):
    """A table joined as of the event time (e.g. hourly weather per airport).

    Its rows come from ``source`` (a day's rows, when the use case's default source is a
    simulator or a package) or, with a files source or no ``source``, from the daily files
    ``<source_dir>/<table>/YYYY-MM-DD.parquet|csv``.
    """

    keys: dict[str, KeyType]
    time: str = Field(description="When a row describes; it is known at time + known_after.")
    columns: dict[str, ValueType]
    known_after: Duration = "0min"
    source: Reference | None = Field(
        None, description="function(day, settings) -> that day's rows (by their time)"
    )


class EventSchema(_Strict):
    event_id: EventId
    event_time: str
    entities: dict[str, KeyType] = Field(min_length=1)
    values: dict[str, ValueType] = {}
    extras: dict[str, Literal["float", "int", "string", "datetime"]] = Field(
        {}, description="Further columns a rule, a derived id or the label's time reads."
    )
    keep_extra_columns: bool = True
    request: list[str] = Field(min_length=1, description="Fields a prediction request carries.")
    rules: list[Rule] = []
    side_tables: dict[Name, SideTable] = {}


# --- 2. label -----------------------------------------------------------------------------


class Label(_Strict):
    """The target and when it becomes known: a fixed delay, or a per-row time."""

    column: str
    task: Literal["binary", "regression"]
    delay_days: int | None = Field(None, ge=1, description="Known this many days after the event.")
    known_at: str | None = Field(None, description="Column holding each row's availability time.")
    known_within: Window | None = Field(
        None,
        description="known_at: a label is known at most this long after its event (rows "
        "later than that are quarantined); bounds how far back the online state reaches.",
    )


# --- 3. features --------------------------------------------------------------------------

RowFunction = Literal["value", "is_weekend", "is_night", "hour_of_day", "day_of_week"]
WindowFunction = Literal[
    "count",  # events in the window
    "sum",
    "mean",  # of a value column, or of the label (a binary label's mean: the positive share)
    "min",
    "max",
    "ratio_to_mean",  # current value / the window's mean of that value (1 when the mean is 0)
    "seconds_since_previous",  # since the entity's previous event, capped at the window
    "days_since_last_positive",  # binary label: newest positive in the window
    "days_since_first_positive",  # binary label: oldest positive in the window
    "positive_share_since_first",  # binary label: positives / events since the oldest one
    "mean_where_positive",  # binary label: mean of a value over the positive events
]
#: Window functions that read the label whatever ``of`` says.
LABEL_FUNCTIONS = frozenset(
    {
        "days_since_last_positive",
        "days_since_first_positive",
        "positive_share_since_first",
        "mean_where_positive",
    }
)
#: Window functions that take no ``of`` column.
NO_INPUT_FUNCTIONS = frozenset(
    {
        "count",
        "seconds_since_previous",
        "days_since_last_positive",
        "days_since_first_positive",
        "positive_share_since_first",
    }
)


class RowFeature(_Strict):
    """A feature of the event alone: a request value or a calendar flag of its time."""

    kind: Literal["row"]
    name: Name
    function: RowFunction
    of: str | None = None
    last_hour: int | None = Field(None, ge=0, le=23, description="is_night: hour <= last_hour.")
    description: str = ""


class WindowFeature(_Strict):
    """An aggregation per entity over a sliding time window ending at the event (exact).

    ``matured``: the window ends where labels become known ((t - delay - w, t - delay], or
    only events whose label is known at t), so it may read the label. ``windows`` declares
    one feature per window; ``name`` then holds ``{n}`` and ``{unit}`` (``1day``, ``15minute``).
    """

    kind: Literal["window"]
    name: str
    entity: str
    function: WindowFunction
    of: str | None = None
    window: Window | None = None
    windows: list[Window] | None = None
    matured: bool = False
    description: str = ""


class AsOfFeature(_Strict):
    """A side-table column as known at the event time (newest row with time + known_after <= t)."""

    kind: Literal["asof"]
    name: Name
    table: str
    column: str
    join: dict[str, str] = Field(min_length=1, description="Event column -> side-table key.")
    max_age: Window
    default: float = Field(0.0, description="The value when no row is known within max_age.")
    description: str = ""


Feature = Annotated[RowFeature | WindowFeature | AsOfFeature, Field(discriminator="kind")]


# --- 4. task and metrics ------------------------------------------------------------------

#: Built-in metrics: task kind -> name -> direction.
METRICS: dict[str, dict[str, Literal["maximize", "minimize"]]] = {
    "binary": {"average_precision": "maximize", "roc_auc": "maximize", "log_loss": "minimize"},
    "regression": {
        "mean_absolute_error": "minimize",
        "root_mean_squared_error": "minimize",
        "r2": "maximize",
    },
}
#: Parametrised metric functions an extra metric may instantiate (task kind -> names).
METRIC_FUNCTIONS: dict[str, frozenset[str]] = {
    "binary": frozenset({"entity_precision_at_k"}),  # per day, precision of the top-k entities
    "regression": frozenset(),
}
#: The linear baseline every task trains (always a candidate) and the other candidates.
BASELINES = {"binary": "logistic_regression", "regression": "linear_regression"}
CANDIDATES = frozenset({"logistic_regression", "linear_regression", "lightgbm"})
DECISIONS = {"binary": "threshold", "regression": "value_and_flag"}


class PrimaryMetric(_Strict):
    name: str
    direction: Literal["maximize", "minimize"]


class ExtraMetric(_Strict):
    """A named metric: a built-in one, or an instance of a parametrised metric function."""

    name: Name
    function: str | None = None
    entity: str | None = None
    k: int | None = Field(None, ge=1)


class Decision(_Strict):
    kind: Literal["threshold", "value_and_flag"]
    flag: Name | None = Field(None, description="value_and_flag: name of the yes/no output.")
    above: float | None = Field(None, description="value_and_flag: the flag is value > above.")


class Task(_Strict):
    candidates: list[Literal["logistic_regression", "linear_regression", "lightgbm"]] = Field(
        min_length=1
    )
    primary_metric: PrimaryMetric
    extra_metrics: list[ExtraMetric | str] = []
    gate_metric: str | None = Field(
        None, description="A metric no promoted model may fall below (floor: settings.gate_min)."
    )
    decision: Decision


# --- 5. source ----------------------------------------------------------------------------


class Source(_Strict):
    """Where daily events come from; a folder of daily files always works too."""

    default: Literal["simulator", "package", "files"]
    simulator: Reference | None = Field(None, description="function(day, settings) -> frame")
    package: Reference | None = Field(None, description="function(day, settings) -> frame")


# --- 6. settings --------------------------------------------------------------------------

ParamValue = bool | int | float | date | str


class SettingsSpec(_Strict):
    """Values of the use case, each overridable by ``<env_prefix><FIELD>`` (upper case)."""

    env_prefix: str | None = Field(None, description="Default: the use-case name, upper, + '_'.")
    start_date: date
    end_date: date
    source: Literal["simulator", "package", "files"] | None = Field(
        None,
        description="Overrides source.default: e.g. files (with source_dir) to replay daily files "
        "of a use case whose default is a simulator or a package.",
    )
    source_dir: Path | None = None
    quarantine_max_share: float = Field(0.01, ge=0, le=1)
    train_days: int = Field(14, ge=1)
    valid_days: int = Field(7, ge=1)
    baseline_margin: float = Field(0.005, description="LightGBM must beat the baseline by this.")
    promotion_margin: float = Field(0.005, description="A challenger must beat the champion.")
    gate_min: float | None = Field(None, description="Floor of task.gate_metric.")
    drift_share_threshold: float = Field(0.3, ge=0, le=1)
    retrain_performance_margin: float = Field(0.05, ge=0)
    retrain_min_new_labeled_days: int = Field(14, ge=1)
    retrain_min_days_between: int = Field(3, ge=0)
    performance_window_days: int = Field(3, ge=1)
    skew_tolerance: float = Field(1e-9, ge=0)
    params: dict[Name, ParamValue] = Field(
        {}, description="Use-case specific values (e.g. simulator knobs), typed by their value."
    )


class ResolvedSettings(SettingsSpec):
    """Settings after environment overrides; ``label_delay_days`` comes from the label."""

    env_prefix: str
    label_delay_days: int | None = Field(None, ge=1)


# --- names on the real-time API ---------------------------------------------------------


class ApiSpec(_Strict):
    """Names the use case's API shows (its OpenAPI page, its batch body); derived if absent."""

    request_name: str | None = Field(
        None,
        pattern=r"^[A-Z][A-Za-z0-9]*$",
        description="OpenAPI name of the request model (default: <Name>Request).",
    )
    batch_key: Name = Field("events", description="Body key of /predict_batch's list.")


# --- the whole declaration ----------------------------------------------------------------


class UseCaseSpec(_Strict):
    name: Name
    description: str = ""
    model_name: Name | None = Field(None, description="Default: <name>_model.")
    service: Reference = Field(description="BentoML service target, module:Class.")
    event_schema: EventSchema = Field(alias="schema")
    label: Label
    features: list[Feature] = Field(min_length=1)
    task: Task
    source: Source
    settings: SettingsSpec
    api: ApiSpec = ApiSpec()
