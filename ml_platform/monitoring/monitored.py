"""What monitoring reads of one use case: its tables and its columns, by role.

Drift, skew, labelled performance and the summary read a use case through this one object,
so none of them names a table or a column: the lake tables follow
:func:`ml_platform.defs.names.lake_table`, the warehouse tables
:func:`ml_platform.defs.names.warehouse_model`, the columns the declaration's roles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ml_platform.defs import names

if TYPE_CHECKING:
    from ml_platform.serving.prediction_log import LogLayout
    from ml_platform.settings import Settings
    from ml_platform.training.metrics import Metric
    from ml_platform.use_cases import UseCase

#: Declared column type -> the pandas dtype monitoring stores it as.
PANDAS_TYPES = {
    "int": "int64",
    "float": "float64",
    "string": "string",
    "datetime": "datetime64[ns]",
}


@dataclass(frozen=True)
class Monitored:
    """One use case as monitoring sees it."""

    use_case: UseCase

    @classmethod
    def of(cls, use_case: UseCase | str | None = None) -> Monitored:
        """``use_case`` (a name, or default: the flagship) as monitoring sees it."""
        from ml_platform.features.definitions import DEFAULT_USE_CASE
        from ml_platform.features.online import resolve_use_case

        return cls(resolve_use_case(DEFAULT_USE_CASE if use_case is None else use_case))

    @property
    def name(self) -> str:
        return self.use_case.name

    @property
    def task(self) -> str:
        return self.use_case.task

    # --- tables ---------------------------------------------------------------------------

    def lake(self, base: str) -> str:
        """The lake table of asset ``base`` of this use case."""
        return names.lake_table(base, self.name)

    def warehouse(self, base: str) -> str:
        """The DuckDB table of dbt model ``base`` of this use case."""
        return names.warehouse_model(base, self.name)

    def reports_dir(self, settings: Settings) -> Path:
        """Where its HTML and PNG reports go (the flagship's: the reports folder itself)."""
        return (
            settings.reports_dir if self.use_case.is_flagship else settings.reports_dir / self.name
        )

    # --- columns ----------------------------------------------------------------------------

    @property
    def event_id(self) -> str:
        return self.use_case.spec.event_schema.event_id.column

    @property
    def event_time(self) -> str:
        return self.use_case.spec.event_schema.event_time

    @property
    def label(self) -> str:
        return self.use_case.spec.label.column

    @cached_property
    def decision(self) -> str:
        """The yes/no column of its predictions (binary alert, or a regression's flag)."""
        from ml_platform.serving.scoring import decision_column

        return decision_column(self.use_case)

    @cached_property
    def feature_columns(self) -> list[str]:
        from ml_platform.features.definitions import feature_set

        return list(feature_set(self.use_case).columns)

    @cached_property
    def primary(self) -> Metric:
        """The primary metric (its direction decides what "better" means)."""
        from ml_platform.training.metrics import task_metrics

        return task_metrics(self.use_case).primary

    @cached_property
    def log_layout(self) -> LogLayout:
        """The layout of its prediction log."""
        from ml_platform.serving.prediction_log import log_layout

        return log_layout(self.use_case)

    @cached_property
    def request_types(self) -> dict[str, str]:
        """The logged request fields (event id first) -> pandas dtype."""
        return {name: PANDAS_TYPES[typ] for name, typ in self.log_layout.request}

    @cached_property
    def online_columns(self) -> dict[str, str]:
        """Columns of the ``online_predictions`` lake table (one row per answered request)."""
        return {
            **self.request_types,
            "score": "float64",
            self.decision: "bool",
            "threshold": "float64",
            "model_name": "string",
            "model_version": "string",
            "feature_version": "string",
            "latency_ms": "float64",
            "logged_at": "datetime64[ns]",
            "request_id": "string",
        }
