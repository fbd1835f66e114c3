"""Declared features -> the ``FeatureDef`` tuple today's feature engines run.

Why it exists: until the engines read declarations directly, this translation is the proof
that porting them will be bit-identical: the fraud declaration must translate to exactly
today's ``FEATURES`` (names, order, aggregate, entity, window, label delay, description).
It refuses what today's engines cannot compute (sub-day windows, side-table joins, other
event shapes) with the feature and the reason, instead of translating approximately.
"""

from __future__ import annotations

from ml_platform.data.contract import RAW_COLUMNS, TX_FRAUD
from ml_platform.features.definitions import NIGHT_LAST_HOUR, Aggregate, FeatureDef
from ml_platform.use_cases.loader import UseCase, UseCaseError
from ml_platform.use_cases.spec import AsOfFeature, RowFeature, duration_seconds

_ROW: dict[str, Aggregate] = {"value": "value", "is_weekend": "weekend", "is_night": "night"}
#: window function -> today's aggregate, by whether it aggregates the label or a value.
_WINDOW_ON_VALUE: dict[str, Aggregate] = {
    "count": "count",
    "mean": "mean_amount",
    "ratio_to_mean": "amount_ratio",
    "seconds_since_previous": "seconds_since_prev",
    "days_since_last_positive": "days_since_fraud",
    "days_since_first_positive": "days_since_first_fraud",
    "positive_share_since_first": "fraud_share_since_first",
    "mean_where_positive": "fraud_mean_amount",
}
_WINDOW_ON_LABEL: dict[str, Aggregate] = {"mean": "risk", "sum": "fraud_count"}
_DAY = 86_400


def to_feature_defs(use_case: UseCase) -> tuple[FeatureDef, ...]:
    """The use case's features as today's engines define them, in declaration order."""
    label = use_case.spec.label.column
    expected = dict(RAW_COLUMNS)
    expected.pop(TX_FRAUD)
    declared = {c: t for c, t in use_case.columns.items() if c in expected}
    if set(declared) != set(expected) or label != TX_FRAUD:
        raise UseCaseError(
            f"{use_case.file}: schema: today's feature engines run only on the transaction "
            f"contract ({', '.join(RAW_COLUMNS)}); the generic engines come next"
        )
    out = []
    for f in use_case.features:
        where = f"{use_case.file}: feature {f.name}"
        if isinstance(f, AsOfFeature):
            raise UseCaseError(f"{where}: today's engines have no side-table joins")
        if isinstance(f, RowFeature):
            if f.function not in _ROW or (f.function == "value" and f.of != f.name):
                raise UseCaseError(f"{where}: today's engines cannot compute {f.function}")
            if f.function == "is_night" and f.last_hour != NIGHT_LAST_HOUR:
                raise UseCaseError(f"{where}: today's engines use last_hour {NIGHT_LAST_HOUR}")
            out.append(FeatureDef(f.name, _ROW[f.function], description=f.description))
            continue
        table = _WINDOW_ON_LABEL if f.of == label else _WINDOW_ON_VALUE
        if f.function not in table:
            raise UseCaseError(f"{where}: today's engines cannot compute {f.function}")
        seconds = duration_seconds(f.window or "")
        if seconds % _DAY:
            raise UseCaseError(f"{where}: today's engines compute whole-day windows only")
        out.append(
            FeatureDef(
                f.name, table[f.function], f.entity, seconds // _DAY, f.matured, f.description
            )
        )
    return tuple(out)
