"""Dagster entry point (workspace.yaml and ``dagster dev -m`` load ``defs`` from here).

``defs`` is lazy (``@dg.definitions``): importing this module reads no setting and builds
nothing; Dagster calls it when it loads the code location. Code that wants the definitions
themselves calls :func:`ml_platform.defs.build_definitions` (with chosen settings if needed).
"""

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """Every stage of every use case: the shipped ones (``ml_platform.defs.DAGSTER_USE_CASES``)
    and each one found in ``ML_PLATFORM_USE_CASE_DIRS``."""
    from ml_platform.defs import build_definitions

    return build_definitions()
