"""What a stage builder builds from: one use case and the settings read for this build.

Builders (``ml_platform.defs.<stage>.build``) take a :class:`StageContext` and return that
stage's ``dg.Definitions`` for the use case; every name goes through :meth:`StageContext.name`
so it carries the use case's prefix. Nothing here reads settings at import: the context is
made by :func:`ml_platform.defs.build_definitions`, when definitions are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.defs import names

if TYPE_CHECKING:
    from ml_platform.settings import Settings
    from ml_platform.use_cases import UseCase

#: Definition metadata key naming the lake table an asset is stored in (LakeIOManager).
LAKE_TABLE_KEY = "ml_platform/lake_table"
#: Definition metadata and run tag key naming the use case.
USE_CASE_KEY = "ml_platform/use_case"


@dataclass(frozen=True)
class StageContext:
    """One use case and its settings, with the names and partitions its definitions use."""

    use_case: UseCase
    settings: Settings

    def name(self, base: str) -> str:
        """``base`` prefixed with the use case's name (assets, checks, groups, jobs, ...)."""
        return self.use_case.qualified(base)

    def key(self, base: str) -> dg.AssetKey:
        return dg.AssetKey(self.name(base))

    @property
    def model_name(self) -> str:
        """The use case's registered model (MLflow)."""
        return self.use_case.model_name

    @cached_property
    def partitions(self) -> dg.DailyPartitionsDefinition:
        """Daily partitions over the settings' date range (built once per context)."""
        from ml_platform.defs.partitions import build_daily_partitions

        return build_daily_partitions(self.settings)

    def metadata(self, base: str) -> dict[str, str]:
        """Definition metadata of asset ``base``: its use case and its lake table."""
        return {USE_CASE_KEY: self.use_case.name, LAKE_TABLE_KEY: names.lake_table(base)}

    def tags(self) -> dict[str, str]:
        """Tags of jobs and run requests: the use case they belong to."""
        return {USE_CASE_KEY: self.use_case.name}


def fraud_context(settings: Settings | None = None) -> StageContext:
    """The fraud use case with the current (or given) settings: tests and the CLI."""
    from ml_platform.settings import get_settings
    from ml_platform.use_cases import get_use_case
    from ml_platform.use_cases.loader import use_case_roots

    settings = settings or get_settings()
    return StageContext(get_use_case("fraud", use_case_roots(settings.use_case_dirs)), settings)
