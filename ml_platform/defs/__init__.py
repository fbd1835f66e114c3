"""The Dagster layer: thin assets, checks, jobs and sensors over the plain-Python core.

Each stage lives in its own folder and exposes ``build(ctx)``, which builds that stage's
definitions for one use case (:class:`~ml_platform.defs.context.StageContext`);
:func:`build_definitions` merges every stage of every use case of the code location
(:data:`DAGSTER_USE_CASES` and the use cases of ``ML_PLATFORM_USE_CASE_DIRS``).
Importing this package builds nothing and reads no setting: definitions are built when
``build_definitions`` is called (``ml_platform.definitions`` calls it lazily, when Dagster
loads the code location).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.defs import names

if TYPE_CHECKING:
    from ml_platform.defs.context import StageContext
    from ml_platform.settings import Settings
    from ml_platform.use_cases.spec import ResolvedSettings

log = logging.getLogger(__name__)

# Single-run backfill policies and look-back partition mappings are marked beta in Dagster
# 1.13; we depend on them deliberately, so their warnings are noise for our users.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

#: The shipped use cases, whose pipelines the Dagster code location always serves (each gets
#: its own prefixed assets, lake tables, jobs, sensors and registered model, so they never
#: collide). A team's use case joins them by its folder: every use case found in
#: ``ML_PLATFORM_USE_CASE_DIRS`` is served too (:func:`code_location_use_cases`).
DAGSTER_USE_CASES: tuple[str, ...] = ("fraud", "flights")

#: Stage modules (``ml_platform.defs.<stage>``) in pipeline order; each has
#: ``build(ctx) -> dg.Definitions`` (one use case), may have
#: ``shared_resources(settings) -> dict`` (resources every use case's assets share, added once)
#: and ``unsupported(ctx) -> str | None``: why the stage cannot run for that use case yet (it
#: is then left out of its definitions, and the reason logged), None when it can.
#: Today automation (the daily job and the retraining sensor) is the flagship's only.
STAGES = (
    names.INGESTION,
    names.WAREHOUSE,
    names.FEATURES,
    names.TRAINING,
    names.SERVING,
    names.MONITORING,
    names.AUTOMATION,
)


def load_settings() -> Settings:
    """The current settings; a bad ``ML_PLATFORM_*`` value fails naming the variable."""
    from pydantic import ValidationError

    from ml_platform.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        problems = [
            f"ML_PLATFORM_{'_'.join(map(str, e['loc'])).upper() or '(settings)'}: {e['msg']}"
            + (f" (got {e['input']!r})" if isinstance(e.get("input"), str) else "")
            for e in exc.errors()
        ]
        raise ValueError("settings: " + "; ".join(problems)) from None


def code_location_use_cases(settings: Settings) -> tuple[str, ...]:
    """What the code location serves: :data:`DAGSTER_USE_CASES`, then every other use case
    of the folders in ``settings.use_case_dirs`` (``ML_PLATFORM_USE_CASE_DIRS``), by name."""
    from ml_platform.use_cases import load_use_cases
    from ml_platform.use_cases.loader import use_case_roots

    known = load_use_cases(use_case_roots(settings.use_case_dirs))
    return (*DAGSTER_USE_CASES, *sorted(set(known) - set(DAGSTER_USE_CASES)))


def unsupported_reason(stage: str, ctx: StageContext) -> str | None:
    """Why ``stage`` is left out of ``ctx.use_case``'s definitions, or None if it is built."""
    import importlib

    module = importlib.import_module(f"ml_platform.defs.{stage}")
    check = getattr(module, "unsupported", None)
    return check(ctx) if check is not None else None


def build_definitions(
    use_cases: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    stages: Sequence[str] = STAGES,
    use_case_settings: Mapping[str, ResolvedSettings] | None = None,
) -> dg.Definitions:
    """Every stage (or the ``stages`` given) of every use case named (default: the code
    location's, :func:`code_location_use_cases`), with ``settings`` (default: read now from
    the environment), the lake IO manager and the in-process executor.
    ``use_case_settings`` (name -> resolved settings) replace a non-flagship use
    case's ``<PREFIX>*`` variables. A stage a use case does not support yet is left out of
    its definitions, with the reason logged. The backtest and tests build definitions for
    chosen dates this way."""
    import importlib

    from ml_platform.defs.context import StageContext
    from ml_platform.defs.resources import build_resources
    from ml_platform.use_cases import load_use_cases
    from ml_platform.use_cases.loader import use_case_roots

    settings = settings or load_settings()
    known = load_use_cases(use_case_roots(settings.use_case_dirs))
    if use_cases is None:
        use_cases = code_location_use_cases(settings)
    unknown = [name for name in use_cases if name not in known]
    if unknown:
        raise ValueError(
            f"use cases: {', '.join(unknown)} not found (known: {', '.join(sorted(known))})"
        )
    modules = {stage: importlib.import_module(f"ml_platform.defs.{stage}") for stage in stages}
    own = use_case_settings or {}
    contexts = [StageContext(known[name], settings, own.get(name)) for name in use_cases]
    parts = []
    for ctx in contexts:
        for stage, module in modules.items():
            reason = unsupported_reason(stage, ctx)
            if reason is None:
                parts.append(module.build(ctx))
            else:
                log.info("stage %s left out of use case %s: %s", stage, ctx.use_case.name, reason)
    resources = build_resources(settings)
    for module in modules.values():
        if hasattr(module, "shared_resources"):
            resources |= module.shared_resources(settings)
    return dg.Definitions.merge(
        *parts, dg.Definitions(resources=resources, executor=dg.in_process_executor)
    )
