"""The fraud use case's simulator source: what its YAML cannot say.

Days come from the platform's transaction simulator with this use case's own knobs
(``params.sim_*`` in ``use_case.yaml``, overridable by ``FRAUD_SIM_*``).
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from ml_platform.data.simulator import generate_day
from ml_platform.use_cases.spec import ResolvedSettings


def simulate_day(day: date, settings: ResolvedSettings) -> pd.DataFrame:
    """All simulated transactions of ``day`` (contract columns plus the scenario column)."""
    p = settings.params
    return generate_day(
        day,
        seed=int(p["sim_seed"]),
        n_customers=int(p["sim_n_customers"]),
        n_terminals=int(p["sim_n_terminals"]),
    )
