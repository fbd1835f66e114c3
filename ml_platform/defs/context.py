"""What a stage builder builds from: one use case and the settings read for this build.

Builders (``ml_platform.defs.<stage>.build``) take a :class:`StageContext` and return that
stage's ``dg.Definitions`` for the use case; every name goes through :meth:`StageContext.name`
so it carries the use case's prefix. Nothing here reads settings at import: the context is
made by :func:`ml_platform.defs.build_definitions`, when definitions are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.defs import names

if TYPE_CHECKING:
    from ml_platform.settings import Settings
    from ml_platform.use_cases import UseCase
    from ml_platform.use_cases.spec import ResolvedSettings

#: Definition metadata key naming the lake table an asset is stored in (LakeIOManager).
LAKE_TABLE_KEY = "ml_platform/lake_table"
#: Definition metadata key naming the declared side table an asset holds.
SIDE_TABLE_KEY = "ml_platform/side_table"
#: Definition metadata and run tag key naming the use case.
USE_CASE_KEY = "ml_platform/use_case"


@dataclass(frozen=True)
class RunSettings:
    """The values a use case's stages run with, whichever variables they come from.

    The flagship reads the platform's ``ML_PLATFORM_*`` settings, as it always has; any
    other use case its own (``<PREFIX>START_DATE`` ... over its folder's values,
    :func:`ml_platform.use_cases.resolve_settings`).
    """

    start_date: date
    end_date: date
    train_days: int
    valid_days: int
    quarantine_max_share: float
    #: days until every label of a day is known (training windows, the gate's window):
    #: the fixed delay, or a per-row label's ``known_within`` rounded up to whole days
    label_delay_days: int
    baseline_margin: float
    promotion_margin: float
    gate_min: float | None


@dataclass(frozen=True)
class StageContext:
    """One use case and its settings, with the names and partitions its definitions use.

    ``use_case_settings``: a non-flagship use case's resolved settings (default: resolved
    from the environment when first needed); the flagship ignores them.
    """

    use_case: UseCase
    settings: Settings
    use_case_settings: ResolvedSettings | None = None

    @property
    def is_flagship(self) -> bool:
        return self.use_case.is_flagship

    def name(self, base: str) -> str:
        """``base`` prefixed with the use case's name (assets, checks, groups, jobs, ...)."""
        return self.use_case.qualified(base)

    def key(self, base: str) -> dg.AssetKey:
        return dg.AssetKey(self.name(base))

    def table(self, base: str) -> str:
        """The lake table of asset ``base`` (:func:`ml_platform.defs.names.lake_table`)."""
        return names.lake_table(base, self.use_case.name)

    @property
    def model_name(self) -> str:
        """The use case's registered model (MLflow)."""
        return self.use_case.model_name

    @cached_property
    def resolved(self) -> ResolvedSettings:
        """The use case's own settings (folder values, ``<PREFIX>*`` overrides)."""
        from ml_platform.use_cases import resolve_settings

        return self.use_case_settings or resolve_settings(self.use_case)

    @property
    def own(self) -> Settings | ResolvedSettings:
        """Where the use case's thresholds live (drift, skew, retraining, performance window):
        the platform's ``ML_PLATFORM_*`` settings for the flagship, its own ``<PREFIX>*``
        otherwise (both name them alike)."""
        return self.settings if self.is_flagship else self.resolved

    @cached_property
    def run(self) -> RunSettings:
        """Dates, windows and margins of this use case's stages."""
        s = self.settings
        if self.is_flagship:
            return RunSettings(
                s.start_date,
                s.end_date,
                s.train_days,
                s.valid_days,
                s.quarantine_max_share,
                s.label_delay_days,
                s.baseline_margin_ap,
                s.promotion_margin_ap,
                s.gate_min_auc,
            )
        from ml_platform.use_cases.loader import declared_label_delay

        r, label = self.resolved, self.use_case.spec.label
        if label.known_within is not None:
            delay = int(declared_label_delay(self.use_case) or s.label_delay_days)
        else:
            delay = int(r.label_delay_days or label.delay_days or s.label_delay_days)
        return RunSettings(
            r.start_date,
            r.end_date,
            r.train_days,
            r.valid_days,
            r.quarantine_max_share,
            delay,
            r.baseline_margin,
            r.promotion_margin,
            r.gate_min,
        )

    @cached_property
    def partitions(self) -> dg.DailyPartitionsDefinition:
        """Daily partitions over the use case's date range (built once per context)."""
        from ml_platform.defs.partitions import build_daily_partitions

        return build_daily_partitions(self.run)

    def metadata(self, base: str) -> dict[str, str]:
        """Definition metadata of asset ``base``: its use case and its lake table."""
        return {USE_CASE_KEY: self.use_case.name, LAKE_TABLE_KEY: self.table(base)}

    def tags(self) -> dict[str, str]:
        """Tags of jobs and run requests: the use case they belong to."""
        return {USE_CASE_KEY: self.use_case.name}


def flagship_only(ctx: StageContext, reads: str) -> str | None:
    """The reason a stage that reads the flagship's own tables or columns (``reads``) is
    left out of ``ctx.use_case``'s definitions, or None for the flagship."""
    if ctx.is_flagship:
        return None
    return f"reads {reads}, the flagship's; not built for use case {ctx.use_case.name!r} yet"


def fraud_context(settings: Settings | None = None) -> StageContext:
    """The fraud use case with the current (or given) settings: tests and the CLI."""
    from ml_platform.settings import get_settings
    from ml_platform.use_cases import get_use_case
    from ml_platform.use_cases.loader import use_case_roots

    settings = settings or get_settings()
    return StageContext(get_use_case("fraud", use_case_roots(settings.use_case_dirs)), settings)
