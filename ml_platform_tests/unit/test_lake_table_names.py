"""Lake tables: every use case's are its own, from one naming function.

``names.lake_table(base, use_case)`` is ``<use case>_<base>`` for every use case but the
flagship, which keeps its historical folders (the documented exception). Two use cases, or a
use case and the flagship, must never share a folder, whatever their names.
"""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from ml_platform.defs import names

#: The base name of every asset the Dagster layer stores (constants of ``defs.names``).
BASES = [
    names.RAW_EVENTS,
    names.VALIDATED_EVENTS,
    names.QUARANTINED_EVENTS,
    names.EVENT_FEATURES,
    names.TRAINING_SET,
    names.BATCH_PREDICTIONS,
    names.ONLINE_PREDICTIONS,
    names.DRIFT_REPORT,
    names.SERVING_SKEW,
    names.MODEL_PERFORMANCE,
    names.MONITORING_SUMMARY,
    "weather",
    names.quarantined("weather"),
]
FLAGSHIP = {names.lake_table(base, "fraud") for base in BASES}
USE_CASE_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda n: n != "fraud"
)


@settings(deadline=None)
@given(a=USE_CASE_NAMES, b=USE_CASE_NAMES, base=st.sampled_from(BASES))
def test_two_use_cases_never_share_a_lake_table(a: str, b: str, base: str) -> None:
    table = names.lake_table(base, a)
    assert table == f"{a}_{base}"
    assert (names.lake_table(base, b) == table) == (a == b)
    assert table not in FLAGSHIP


def test_the_flagship_keeps_its_historical_tables() -> None:
    assert names.lake_table(names.VALIDATED_EVENTS, "fraud") == "validated_transactions"
    assert names.lake_table(names.EVENT_FEATURES) == "transaction_features"
    assert names.lake_table(names.TRAINING_SET, "fraud") == names.TRAINING_SET


def test_a_use_case_runs_with_its_own_settings() -> None:
    """Flights' stages read FLIGHTS_* (here given), and a label known within 2 days keeps
    a 2-day gap between training and validation."""
    from ml_platform.defs.context import StageContext
    from ml_platform.settings import get_settings
    from ml_platform.use_cases import get_use_case, resolve_settings

    flights = get_use_case("flights")
    own = resolve_settings(flights, environ={"FLIGHTS_TRAIN_DAYS": "3"})
    ctx = StageContext(flights, get_settings(), own)
    assert (ctx.run.start_date, ctx.run.end_date) == (date(2013, 1, 1), date(2013, 12, 31))
    assert ctx.run.train_days == 3 and ctx.run.label_delay_days == 2
    assert ctx.table(names.EVENT_FEATURES) == "flights_event_features"
    keys = ctx.partitions.get_partition_keys()
    assert (keys[0], keys[-1], len(keys)) == ("2013-01-01", "2013-12-31", 365)
    fraud = StageContext(get_use_case("fraud"), get_settings())
    assert fraud.run.label_delay_days == get_settings().label_delay_days
    assert fraud.run.start_date == get_settings().start_date
