"""Request and response models of the real-time API (DESIGN.md, "Real-time API").

They are derived from the use case's event schema (docs/USE_CASES.md), never written per use
case: the request carries the schema's ``request`` fields, typed as declared and bounded by
its rules. Strict pydantic models: a mistyped field (``"12"`` for an id, ``true`` for an
amount) is a 400 naming the field rather than a silent coercion; floats must be finite; int
keys fit int64. Timezone-aware datetimes are converted to naive UTC, the lake's convention.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from ml_platform.use_cases.loader import PACKAGE_ROOT, UseCase, load_use_case
from ml_platform.use_cases.spec import Rule, camel_name

log = logging.getLogger(__name__)

#: The use case this API serves (a folder of the package): ``FraudDetector`` is its service.
SERVED_USE_CASE = "fraud"

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
TX_DATETIME_MIN = datetime(1678, 1, 1)  # int64 ns timestamps: 1677-09-21..2262-04-11
TX_DATETIME_MAX = datetime(2262, 1, 1)
#: Python type of each declared column type.
_PY_TYPES: dict[str, type] = {"int": int, "float": float, "string": str, "datetime": datetime}


def _naive_utc(value: datetime) -> datetime:
    """Aware -> naive UTC; refused outside the int64-nanosecond range the engines compute in."""
    try:
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 has no UTC year
        value = datetime.min
    # the feature engines work in int64 nanoseconds (pandas' range): found by fuzzing
    if not TX_DATETIME_MIN <= value <= TX_DATETIME_MAX:
        raise ValueError(
            f"outside the supported range {TX_DATETIME_MIN:%Y-%m-%d}..{TX_DATETIME_MAX:%Y-%m-%d}"
        )
    return value


EventTime = Annotated[datetime, AfterValidator(_naive_utc)]


class RequestModel(BaseModel):
    """Base of every generated request model: strict, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")

    def as_record(self) -> dict[str, Any]:
        """The plain dict (request fields in declaration order) the feature engines and the
        prediction log take."""
        return dict(self.__dict__)


@cache
def served_use_case() -> UseCase:
    """The use case this API serves, read from its one YAML file (cold start stays light)."""
    return load_use_case(PACKAGE_ROOT / SERVED_USE_CASE)


def _one_of(values: list[Any]) -> Callable[[Any], Any]:
    allowed = set(values)
    text = ", ".join(map(str, values))

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"not one of {text}")
        return value

    return check


def _bounds(typ: str, rules: list[Rule]) -> tuple[float | None, float | None]:
    """The tightest lower and upper bound the rules (and int64 for ints) put on a column."""
    low: float | None = INT64_MIN if typ == "int" else None
    high: float | None = INT64_MAX if typ == "int" else None
    for rule in rules:
        if rule.check not in ("non_negative", "range"):
            continue
        lo, hi = (0, None) if rule.check == "non_negative" else (rule.min, rule.max)
        if lo is not None:
            lo = math.ceil(lo) if typ == "int" else lo
            low = lo if low is None else max(low, lo)
        if hi is not None:
            hi = math.floor(hi) if typ == "int" else hi
            high = hi if high is None else min(high, hi)
    return low, high


def _describe(role: str, typ: str, low: float | None, high: float | None) -> str:
    """``Unique id, int64 >= 0.``: the column's role, its type and its bounds."""
    if typ == "datetime":
        return f"{role}, ISO 8601 date and time; aware -> naive UTC."
    kind = {"int": "int64", "float": "finite", "string": "string"}[typ]
    shown = [
        f"{op} {bound:g}"
        for op, bound, edge in ((">=", low, INT64_MIN), ("<=", high, INT64_MAX))
        if bound is not None and bound != edge
    ]
    sep = " " if typ == "int" else ", "
    return f"{role}, {kind}{sep if shown else ''}{' and '.join(shown)}."


def _roles(use_case: UseCase) -> dict[str, str]:
    s = use_case.spec.event_schema
    roles = {c: "Extra column" for c in s.extras}
    roles |= {c: "Value" for c in s.values}
    roles |= {c: "Entity key" for c in s.entities}
    roles[s.event_time] = "Event time"
    roles[s.event_id.column] = "Unique id"
    return roles


def _request_field(use_case: UseCase, column: str, role: str) -> tuple[Any, Any]:
    typ = use_case.columns[column]
    rules = [r for r in use_case.spec.event_schema.rules if r.column == column]
    if typ == "datetime":
        annotation: Any = EventTime
    else:
        annotation = _PY_TYPES[typ]
    low, high = _bounds(typ, rules)
    kwargs: dict[str, Any] = {"description": _describe(role, typ, low, high)}
    for rule in rules:
        if rule.check == "one_of":
            annotation = Annotated[annotation, AfterValidator(_one_of(rule.values or []))]
            kwargs["json_schema_extra"] = {"enum": rule.values}
    if low is not None:
        kwargs["ge"] = low
    if high is not None:
        kwargs["le"] = high
    if typ == "float":
        kwargs["allow_inf_nan"] = False
    return annotation, Field(**kwargs)


def _example_hook(use_case: UseCase) -> Callable[[dict[str, Any]], None]:
    """Adds a real event of the use case as the OpenAPI example, computed when the schema is
    first asked for (the service's import stays light) and kept."""
    found: list[dict[str, Any] | None] = []

    def add(schema: dict[str, Any]) -> None:
        if not found:
            from ml_platform.use_cases.derive import example_request

            try:
                found.append(example_request(use_case))
            except Exception as exc:  # the API page must not fail for want of its example
                log.warning("use case %r: no OpenAPI example request: %s", use_case.name, exc)
                found.append(None)
        if found[0] is not None:  # OpenAPI 3.0's "example": BentoML rejects "examples"
            schema["example"] = found[0]

    return add


def request_model(use_case: UseCase, name: str | None = None) -> type[RequestModel]:
    """The API's request model: one strict field per ``schema.request`` entry, in its order.

    Ints are int64 and honour ``non_negative``/``range`` rules (``ge``/``le``), floats are
    finite, strings are plain JSON strings, datetimes become naive UTC; ``one_of`` rules
    refuse other values. The error of a refused field names it (``loc``).
    """
    roles = _roles(use_case)
    fields = {c: _request_field(use_case, c, roles[c]) for c in use_case.spec.event_schema.request}
    name = name or f"{camel_name(use_case.name)}Request"
    base = type(
        f"{name}Base",
        (RequestModel,),
        {
            "__module__": __name__,
            "model_config": ConfigDict(json_schema_extra=_example_hook(use_case)),
        },
    )
    return create_model(
        name,
        __base__=base,
        __module__=__name__,
        __doc__=f"One event of use case {use_case.name!r} to score: its request fields, no label.",
        **fields,
    )


def _event_key(use_case: UseCase) -> tuple[str, Any]:
    event_id = use_case.spec.event_schema.event_id
    return event_id.column, (_PY_TYPES[event_id.type], ...)


def answer_fields(use_case: UseCase) -> tuple[str, str]:
    """The names of the score and of the decision in an answer. Binary:
    ``<use case>_probability`` and ``is_<use case>``; regression: ``predicted_<label>`` and
    the declared flag."""
    if use_case.task == "regression":
        flag = use_case.spec.task.decision.flag or "flag"
        return f"predicted_{use_case.spec.label.column}", flag
    return f"{use_case.name}_probability", f"is_{use_case.name}"


def prediction_model(use_case: UseCase, name: str = "Prediction") -> type[BaseModel]:
    """The champion's answer for one event, keyed by the event id (a shadow challenger is
    never returned): the score (a probability, or the predicted value), the decision (the
    alert at the threshold, or the flag above its bound) and the model that gave it."""
    key, key_field = _event_key(use_case)
    score, decision = answer_fields(use_case)
    bound = (
        "The alert threshold (decision: score >= threshold)."
        if use_case.task == "binary"
        else f"The flag's bound (decision: {score} > threshold)."
    )
    fields: dict[str, Any] = {
        key: key_field,
        score: (float, ...),
        decision: (bool, ...),
        "threshold": (float, Field(description=bound)),
        "model_name": (str, ...),
        "model_version": (str, ...),
    }
    return create_model(
        name,
        __module__=__name__,
        __doc__="The champion's answer for one event (a shadow challenger is never returned).",
        **fields,
    )


def feature_vector_model(use_case: UseCase, name: str = "FeatureVector") -> type[BaseModel]:
    """`POST /features`: the online features of an event, which is not recorded."""
    key, key_field = _event_key(use_case)
    fields: dict[str, Any] = {
        key: key_field,
        use_case.spec.event_schema.event_time: (datetime, ...),
        "feature_version": (str, ...),
        "features": (dict[str, float], Field(description="In the use case's feature order.")),
    }
    return create_model(
        name,
        __module__=__name__,
        __doc__="`POST /features`: the online features of an event, which is not recorded.",
        **fields,
    )


#: The models of the served use case, under the names the OpenAPI page shows.
Transaction = request_model(served_use_case(), served_use_case().spec.api.request_name)
Prediction = prediction_model(served_use_case())
FeatureVector = feature_vector_model(served_use_case())


class OnlineStoreDescription(BaseModel):
    """The online store the features come from: how fresh it is and how much it holds."""

    kind: str = Field(description="sqlite or redis (ML_PLATFORM_ONLINE_STORE).")
    watermark: str | None = Field(description="Newest event time held (naive UTC); None: empty.")
    entities: dict[str, int] = Field(description="Entities with state, counted at start/reload.")
    entities_counted_at: str | None = Field(None, description="When they were counted (UTC).")
    error: str | None = Field(None, description="Why the store could not be read, if so.")


class ModelDescription(BaseModel):
    """What `/model` reports: the champion, the shadow challenger, the online store."""

    model_name: str
    champion: dict[str, Any] | None
    challenger: dict[str, Any] | None
    feature_version: str
    feature_columns: list[str]
    loaded_at: str | None
    last_error: str | None = None
    online_store: OnlineStoreDescription | None = None
