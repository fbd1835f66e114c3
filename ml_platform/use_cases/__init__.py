"""Use cases as folders of declarations (schema, label, features, task, source, settings).

See docs/USE_CASES.md. ``load_use_cases()`` finds and checks them all.
"""

from ml_platform.use_cases.loader import (
    UseCase,
    UseCaseError,
    get_use_case,
    load_use_case,
    load_use_cases,
    resolve_settings,
)

__all__ = [
    "UseCase",
    "UseCaseError",
    "get_use_case",
    "load_use_case",
    "load_use_cases",
    "resolve_settings",
]
