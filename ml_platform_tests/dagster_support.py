"""The fraud definitions as the tests use them: built now, for the current settings.

Definitions are built per use case when asked (nothing at import), so a test first points
the settings at its data folder and dates, then builds the stages it needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ml_platform.defs import STAGES, build_definitions, names
from ml_platform.defs.context import StageContext, fraud_context
from ml_platform.settings import Settings

__all__ = ["fraud", "names"]


def fraud(*stages: str, settings: Settings | None = None) -> tuple[StageContext, dg.Definitions]:
    """Fraud's context and the definitions of ``stages`` (default: every stage), for
    ``settings`` (default: the current ones)."""
    ctx = fraud_context(settings)
    chosen: Sequence[str] = stages or STAGES
    return ctx, build_definitions([ctx.use_case.name], settings=ctx.settings, stages=chosen)


def assets_of(defs: dg.Definitions) -> list[dg.AssetsDefinition]:
    """The assets of ``defs``, for ``dg.materialize``."""
    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
