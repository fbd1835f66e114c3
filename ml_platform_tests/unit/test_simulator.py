"""Simulator: per-day determinism, contract shape, the three fraud scenarios, drift."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ml_platform.data import contract as c
from ml_platform.data import simulator as sim

DAY = date(2025, 4, 10)
SMALL = {"seed": 7, "n_customers": 200, "n_terminals": 400}
FULL = {"seed": 42, "n_customers": 5000, "n_terminals": 10000}


@pytest.fixture(scope="module")
def full_month() -> pd.DataFrame:
    """30 days at full scale (~290k rows, well under a second)."""
    return sim.generate_days(date(2025, 4, 1), date(2025, 4, 30), **FULL)


def test_day_alone_equals_day_within_range():
    days = sim.generate_days(DAY - timedelta(days=3), DAY + timedelta(days=2), **SMALL)
    sim._compromised_on.cache_clear()
    sim.build_world.cache_clear()
    alone = sim.generate_day(DAY, **SMALL)
    in_range = days[days[c.TX_DATETIME].dt.date == DAY].reset_index(drop=True)
    assert len(alone) > 100
    pd.testing.assert_frame_equal(alone, in_range)
    pd.testing.assert_frame_equal(alone, sim.generate_day(DAY, **SMALL))


def test_seed_changes_the_data():
    a = sim.generate_day(DAY, **SMALL)
    b = sim.generate_day(DAY, **{**SMALL, "seed": 8})
    assert not a[c.TX_AMOUNT].equals(b[c.TX_AMOUNT])


def test_contract_shape_and_ids(full_month: pd.DataFrame):
    df = sim.generate_day(DAY, **SMALL)
    assert list(df.columns) == [*c.RAW_COLUMNS, sim.SCENARIO]
    assert {col: str(df[col].dtype) for col in c.RAW_COLUMNS} == c.RAW_COLUMNS
    ids = full_month[c.TRANSACTION_ID]
    assert ids.is_unique and ids.is_monotonic_increasing
    first = full_month[full_month[c.TX_DATETIME].dt.date == DAY][c.TRANSACTION_ID].iloc[0]
    assert first == sim.day_index(DAY) * sim.ROWS_PER_DAY_MAX
    day_of_tx = full_month[c.TX_DATETIME].dt.normalize()
    assert (full_month[c.TRANSACTION_ID] // sim.ROWS_PER_DAY_MAX).equals(
        (day_of_tx - pd.Timestamp(sim.EPOCH)).dt.days.astype("int64")
    )
    assert (full_month[c.TX_AMOUNT] >= 0).all()
    assert full_month[c.TX_DATETIME].is_monotonic_increasing


def test_customers_use_terminals_within_radius(full_month: pd.DataFrame):
    w = sim.build_world(**FULL)
    home = w.customer_xy[full_month[c.CUSTOMER_ID].to_numpy()]
    term = w.terminal_xy[full_month[c.TERMINAL_ID].to_numpy()]
    assert (np.hypot(*(home - term).T) < sim.RADIUS).all()
    # about 5000 * mean(U(0, 4)) = 10k per day, minus times falling outside the day
    assert 9_000 < len(full_month) / 30 < 10_500


def test_fraud_rates_per_scenario(full_month: pd.DataFrame):
    rate = full_month[c.TX_FRAUD].mean()
    assert 0.006 < rate < 0.012
    share = full_month[sim.SCENARIO].value_counts(normalize=True)
    assert set(share.index) == {0, 1, 2, 3}  # no drift -> no scenario 4
    assert 0.0002 < share[1] < 0.0015
    assert 0.003 < share[2] < 0.009
    assert 0.0015 < share[3] < 0.005
    assert (full_month[c.TX_FRAUD] == (full_month[sim.SCENARIO] > 0)).all()
    s1 = full_month[full_month[sim.SCENARIO] == 1]
    assert (s1[c.TX_AMOUNT] > sim.FRAUD_AMOUNT).all()
    # scenario 2: on a day a terminal is compromised, every transaction there is fraud
    day = full_month[c.TX_DATETIME].dt.date
    s2_terms = full_month[full_month[sim.SCENARIO] == 2].assign(day=day)[["day", c.TERMINAL_ID]]
    keyed = full_month.assign(day=day).merge(s2_terms.drop_duplicates(), on=["day", c.TERMINAL_ID])
    assert keyed[c.TX_FRAUD].all() and set(keyed[sim.SCENARIO]) == {2, 3}  # 3 overrides 2
    # scenario 3: the amounts are x5, so their mean is far above the normal mean
    s3_mean = full_month.loc[full_month[sim.SCENARIO] == 3, c.TX_AMOUNT].mean()
    assert s3_mean > 3 * full_month.loc[full_month[sim.SCENARIO] == 0, c.TX_AMOUNT].mean()


def test_compromised_customers_lose_about_a_third():
    """Scenario 3 hits ~1/3 of the transactions of customers compromised in the window."""
    start, end = date(2025, 4, 1), date(2025, 5, 30)
    df = sim.generate_days(start, end, **FULL)
    idx = sim.day_index(date(2025, 5, 15))
    rate = sim.CUSTOMERS_PER_DAY_PER_5K
    bad = sim._active(FULL["seed"], sim._S_CUST_COMP, idx, sim.CUSTOMER_WINDOW_DAYS, 5000, rate)
    assert 35 < len(bad) <= 3 * sim.CUSTOMER_WINDOW_DAYS  # exactly 3 a day (may repeat)
    on_day = df[df[c.TX_DATETIME].dt.date == date(2025, 5, 15)]
    theirs = on_day[on_day[c.CUSTOMER_ID].isin(bad)]
    others = on_day[~on_day[c.CUSTOMER_ID].isin(bad)]
    assert (others[sim.SCENARIO] != 3).all()
    share = (theirs[sim.SCENARIO] == 3).mean()
    assert 0.15 < share < 0.5


def test_terminal_compromise_start_is_the_first_day_of_the_spell(full_month: pd.DataFrame):
    """A spell's terminal is all fraud from the start day on; not on the day before."""
    day = date(2025, 4, 29)
    terms = np.arange(FULL["n_terminals"])
    start = sim.terminal_compromise_start(
        day, terms, seed=FULL["seed"], n_terminals=FULL["n_terminals"]
    )
    spells = terms[start >= 0]
    # 2 a day for 28 days, minus repeats; chained spells may start before the 28-day window
    assert 40 < len(spells) <= 2 * sim.TERMINAL_WINDOW_DAYS
    assert (start[start >= 0] <= sim.day_index(day)).all()
    tx_day = full_month[c.TX_DATETIME].dt.date.map(sim.day_index)
    for term in spells:
        s = start[term]
        theirs = full_month[(full_month[c.TERMINAL_ID] == term)]
        in_spell = (tx_day[theirs.index] >= s) & (tx_day[theirs.index] <= sim.day_index(day))
        assert theirs.loc[in_spell, c.TX_FRAUD].all()
        if s > sim.day_index(date(2025, 4, 1)):
            before = theirs[tx_day[theirs.index] == s - 1]
            assert (before[sim.SCENARIO] != 2).all()
    healthy = full_month[
        full_month[c.TERMINAL_ID].isin(terms[start < 0]) & (tx_day == sim.day_index(day))
    ]
    assert len(healthy) > 1000 and (healthy[sim.SCENARIO] != 2).all()


def test_drift_changes_amounts_and_adds_a_fraud_pattern():
    start, drift = date(2025, 4, 1), date(2025, 4, 21)
    end = drift + timedelta(days=sim.DRIFT_RAMP_DAYS)
    kw = {"seed": 3, "n_customers": 1000, "n_terminals": 2000}
    base = sim.generate_days(start, end, **kw)
    drifted = sim.generate_days(start, end, drift_start=drift, **kw)
    before = base[c.TX_DATETIME].dt.date < drift
    pd.testing.assert_frame_equal(base[before], drifted[before])  # nothing changes before
    last = base[c.TX_DATETIME].dt.date >= end - timedelta(days=9)
    ratio = drifted.loc[last, c.TX_AMOUNT].median() / base.loc[last, c.TX_AMOUNT].median()
    assert 1.15 < ratio < 1.35
    s4 = drifted[drifted[sim.SCENARIO] == 4]
    assert len(s4) > 100 and (s4[c.TX_DATETIME].dt.hour < sim.DRIFT_NIGHT_HOUR).all()
    assert drifted.loc[~before, c.TX_FRAUD].mean() > 1.5 * base.loc[~before, c.TX_FRAUD].mean()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="sim_n_customers"):
        sim.generate_day(DAY, seed=1, n_customers=0, n_terminals=10)
    with pytest.raises(ValueError, match="day"):
        sim.generate_day(date(1969, 12, 31), **SMALL)
