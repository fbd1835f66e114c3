"""Declared features -> the ``FeatureDef`` tuple and ``FeatureSet`` the feature engines run.

Why it exists: the engines compute a fixed family of aggregates; this translation maps each
declared feature onto one of them with its columns and its window in nanoseconds, and the
fraud declaration translates to exactly the definitions fraud was built with (the proof that
the port is bit-identical). It refuses what the engines cannot compute (functions they lack
for a column kind, another night hour) with the feature and the reason, instead of
translating approximately.
"""

from __future__ import annotations

from ml_platform.features.definitions import (
    NIGHT_LAST_HOUR,
    SECOND_NS,
    Aggregate,
    FeatureDef,
    FeatureSet,
    SideTableDef,
)
from ml_platform.use_cases.loader import UseCase, UseCaseError
from ml_platform.use_cases.spec import AsOfFeature, RowFeature, duration_seconds

_ROW: dict[str, Aggregate] = {
    "value": "value",
    "is_weekend": "weekend",
    "is_night": "night",
    "hour_of_day": "hour",
    "day_of_week": "weekday",
}
#: window function -> the engines' aggregate, by whether it aggregates the label or a value.
_WINDOW_ON_VALUE: dict[str, Aggregate] = {
    "count": "count",
    "mean": "mean_amount",
    "ratio_to_mean": "amount_ratio",
    "seconds_since_previous": "seconds_since_prev",
    "days_since_last_positive": "days_since_fraud",
    "days_since_first_positive": "days_since_first_fraud",
    "positive_share_since_first": "fraud_share_since_first",
    "mean_where_positive": "fraud_mean_amount",
    "min": "min",
    "max": "max",
}
_WINDOW_ON_LABEL: dict[str, Aggregate] = {
    "mean": "risk",
    "sum": "fraud_count",
    "min": "min",
    "max": "max",
}
#: Aggregates that read the label although they take a value column (or none).
_READS_LABEL = frozenset(
    {"days_since_fraud", "days_since_first_fraud", "fraud_share_since_first", "fraud_mean_amount"}
)


def to_feature_defs(use_case: UseCase) -> tuple[FeatureDef, ...]:
    """The use case's features as the engines define them, in declaration order."""
    label = use_case.spec.label
    out = []
    for f in use_case.features:
        where = f"{use_case.file}: feature {f.name}"
        if isinstance(f, AsOfFeature):
            out.append(
                FeatureDef(
                    f.name,
                    "asof",
                    window_ns=duration_seconds(f.max_age) * SECOND_NS,
                    description=f.description,
                    value=f.column,
                    table=f.table,
                    join=tuple(f.join.items()),
                    default=float(f.default),
                )
            )
            continue
        if isinstance(f, RowFeature):
            if f.function not in _ROW:
                raise UseCaseError(f"{where}: today's engines cannot compute {f.function}")
            if f.function == "is_night" and f.last_hour != NIGHT_LAST_HOUR:
                raise UseCaseError(f"{where}: today's engines use last_hour {NIGHT_LAST_HOUR}")
            out.append(FeatureDef(f.name, _ROW[f.function], description=f.description, value=f.of))
            continue
        on_label = f.of == label.column
        table = _WINDOW_ON_LABEL if on_label else _WINDOW_ON_VALUE
        if f.function not in table:
            raise UseCaseError(f"{where}: today's engines cannot compute {f.function}")
        aggregate = table[f.function]
        reads_label = on_label or aggregate in _READS_LABEL
        out.append(
            FeatureDef(
                f.name,
                aggregate,
                f.entity,
                duration_seconds(f.window or "") * SECOND_NS,
                f.matured,
                f.description,
                value=None if on_label else f.of,
                label=label.column if reads_label else None,
                known_at=label.known_at if f.matured else None,
            )
        )
    return tuple(out)


def to_feature_set(use_case: UseCase) -> FeatureSet:
    """The features plus the column roles the engines read, from the declaration."""
    s = use_case.spec.event_schema
    return FeatureSet(
        use_case=use_case.name,
        event_id=s.event_id.column,
        event_id_type=s.event_id.type,
        event_time=s.event_time,
        entities=tuple(s.entities.items()),
        label=use_case.spec.label.column,
        label_task=use_case.spec.label.task,
        features=to_feature_defs(use_case),
        side_tables=tuple(
            SideTableDef(
                name,
                tuple(t.keys.items()),
                t.time,
                tuple(t.columns),
                duration_seconds(t.known_after) * SECOND_NS,
            )
            for name, t in s.side_tables.items()
        ),
        known_at=use_case.spec.label.known_at,
        known_within_ns=(
            duration_seconds(use_case.spec.label.known_within) * SECOND_NS
            if use_case.spec.label.known_within
            else None
        ),
    )
