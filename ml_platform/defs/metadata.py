"""Numbers that assets and sensors read back from tags, tables and summaries.

Registry tags are strings, dbt marts have NaN for days without labels, summaries may lack a
key: all of them become ``None`` here instead of a crash or a ``nan`` in the UI.
"""

from __future__ import annotations


def finite_or_none(value: object, digits: int | None = None) -> float | None:
    """``float(value)`` (rounded to ``digits`` if given), or None if missing or not a number."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if v != v or v in (float("inf"), float("-inf")):
        return None
    return v if digits is None else round(v, digits)
