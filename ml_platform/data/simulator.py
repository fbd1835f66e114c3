"""Transaction simulator, modelled on the Fraud-Detection-Handbook generator.

Why per day: a partition must regenerate identically whether it is built alone or inside a
range, so every random draw for day D comes from a generator seeded with ``(seed, stream,
day_index)`` and nothing depends on a running RNG or on earlier output. The compromised
terminals/customers of earlier days (scenarios 2 and 3) are re-derived from those days'
own seeds.

World (from ``seed`` only): customers with a home on a 100x100 grid, mean amount U(5, 100),
std = mean / 2, mean transactions per day U(0, 4); terminals on the same grid; a customer
uses the terminals within radius 5 of home (customers with none make no transactions).

Each day: Poisson(mean_nb_tx_per_day) transactions per customer; time of day
N(noon, 20000 s) and transactions falling outside the day are dropped (as in the
handbook); amount N(mean, std), a negative draw is replaced by U(0, 2 * mean), rounded
to cents; the terminal is uniform among the customer's terminals.

Fraud scenarios (column ``tx_fraud_scenario``; a later scenario overrides an earlier one):

1. amount > 220 is fraud;
2. each day ``2 * n_terminals / 10_000`` terminals are compromised (exactly 2 at full
   scale; fractional rates are rounded stochastically per day so the fraud rate does not
   depend on the scale): every transaction there on that day and the next 27 is fraud;
3. each day ``3 * n_customers / 5_000`` customers are compromised (exactly 3 at full
   scale): over that day and the next 13, each of their transactions is, with probability
   1/3, multiplied by 5 and fraud.

Drift (only from ``drift_start``, off by default):

* covariate drift: amounts are inflated by a factor rising linearly from 1 to
  ``1 + DRIFT_INFLATION`` over ``DRIFT_RAMP_DAYS`` days (scenario 1 still applies to the
  observed amount, so the fraud rule itself is unchanged);
* concept drift (scenario 4): a new fraud pattern that no earlier data shows - night
  transactions (before 06:00) of moderate amount (20-100) at terminals not compromised
  under scenario 2 are fraud with probability ``DRIFT_NIGHT_FRAUD_P``.

``transaction_id = day_index * 10_000_000 + row`` where ``day_index`` counts days since
1970-01-01 and rows are sorted by time, so ids are unique and stable across days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd

from ml_platform.data import contract as c

EPOCH = date(1970, 1, 1)
ROWS_PER_DAY_MAX = 10_000_000
GRID = 100.0
RADIUS = 5.0
FRAUD_AMOUNT = 220.0
TERMINAL_WINDOW_DAYS = 28
TERMINALS_PER_DAY_PER_10K = 2.0
CUSTOMER_WINDOW_DAYS = 14
CUSTOMERS_PER_DAY_PER_5K = 3.0
CUSTOMER_FRAUD_SHARE = 1.0 / 3.0
CUSTOMER_FRAUD_MULTIPLIER = 5.0
DRIFT_INFLATION = 0.25
DRIFT_RAMP_DAYS = 60
DRIFT_NIGHT_HOUR = 6
DRIFT_NIGHT_AMOUNT = (20.0, 100.0)
DRIFT_NIGHT_FRAUD_P = 0.1

#: Extra column (allowed by the contract) naming the scenario behind each fraud (0 = none).
SCENARIO = "tx_fraud_scenario"

# Independent random streams; the numbers are part of the data definition - never change.
_S_CUSTOMERS, _S_TERMINALS, _S_TX, _S_TERM_COMP, _S_CUST_COMP, _S_CUST_FRAUD, _S_DRIFT = range(7)


@dataclass(frozen=True)
class World:
    """Customer and terminal profiles plus, per customer, the terminals it can use (CSR)."""

    customer_xy: np.ndarray
    mean_amount: np.ndarray
    std_amount: np.ndarray
    mean_nb_tx_per_day: np.ndarray
    terminal_xy: np.ndarray
    offsets: np.ndarray  # customer i uses terminal_index[offsets[i]:offsets[i] + counts[i]]
    counts: np.ndarray
    terminal_index: np.ndarray

    @property
    def n_customers(self) -> int:
        return len(self.mean_amount)

    @property
    def n_terminals(self) -> int:
        return len(self.terminal_xy)


def day_index(day: date) -> int:
    """Days since 1970-01-01: the seed component and the transaction-id prefix of ``day``."""
    idx = (day - EPOCH).days
    if idx < 0:
        raise ValueError(f"day: {day} is before {EPOCH}, the simulator's first day")
    return idx


@lru_cache(maxsize=8)
def build_world(seed: int, n_customers: int, n_terminals: int) -> World:
    """Profiles depend only on the seed and sizes, so they are built once and cached."""
    if n_customers <= 0 or n_terminals <= 0:
        raise ValueError(
            f"sim_n_customers/sim_n_terminals: must be positive, got {n_customers}/{n_terminals}"
        )
    rc = np.random.default_rng([seed, _S_CUSTOMERS])
    customer_xy = rc.uniform(0, GRID, size=(n_customers, 2))
    mean_amount = rc.uniform(5, 100, size=n_customers)
    mean_nb = rc.uniform(0, 4, size=n_customers)
    terminal_xy = np.random.default_rng([seed, _S_TERMINALS]).uniform(0, GRID, (n_terminals, 2))

    # Terminals within the radius, in customer chunks to bound the distance matrix memory.
    chunk = max(1, 4_000_000 // n_terminals)
    tx, ty = terminal_xy[:, 0], terminal_xy[:, 1]
    rows, cols = [], []
    for start in range(0, n_customers, chunk):
        block = customer_xy[start : start + chunk]
        dx = block[:, :1] - tx
        dy = block[:, 1:] - ty
        dx *= dx
        dy *= dy
        dx += dy
        r, t = np.nonzero(dx < RADIUS**2)
        rows.append(r + start)
        cols.append(t)
    rows_a, cols_a = np.concatenate(rows), np.concatenate(cols)
    counts = np.bincount(rows_a, minlength=n_customers)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return World(
        customer_xy=customer_xy,
        mean_amount=mean_amount,
        std_amount=mean_amount / 2,
        mean_nb_tx_per_day=mean_nb,
        terminal_xy=terminal_xy,
        offsets=offsets,
        counts=counts,
        terminal_index=cols_a.astype(np.int64),  # nonzero is row-major: already grouped
    )


def _stochastic_round(rng: np.random.Generator, rate: float) -> int:
    whole = int(np.floor(rate))
    return whole + int(rng.random() < rate - whole)


@lru_cache(maxsize=4096)
def _compromised_on(seed: int, stream: int, idx: int, population: int, rate: float) -> np.ndarray:
    """The entities compromised on day ``idx`` (drawn from that day's own seed only)."""
    rng = np.random.default_rng([seed, stream, idx])
    k = min(population, _stochastic_round(rng, rate))
    return rng.choice(population, size=k, replace=False) if k else np.empty(0, np.int64)


def _active(seed: int, stream: int, idx: int, window: int, population: int, rate: float):
    """Entities compromised on any of the ``window`` days ending with day ``idx``."""
    sets = [
        _compromised_on(seed, stream, d, population, rate) for d in range(idx - window + 1, idx + 1)
    ]
    return np.unique(np.concatenate(sets))


def _bad_terminals(seed: int, idx: int, n_terminals: int) -> np.ndarray:
    """Terminals under a scenario-2 compromise on day ``idx`` (sorted)."""
    rate = TERMINALS_PER_DAY_PER_10K * n_terminals / 10_000
    return _active(seed, _S_TERM_COMP, idx, TERMINAL_WINDOW_DAYS, n_terminals, rate)


def terminal_compromise_start(
    day: date, terminals: np.ndarray, *, seed: int = 42, n_terminals: int = 10000
) -> np.ndarray:
    """Day index on which each terminal's current compromise spell began (-1: none on ``day``).

    Why: ground truth for analyses that must know how old a compromise is (e.g. whether its
    first frauds are already older than the label delay, so features could know of it).
    Overlapping compromises chain into one spell.
    """
    idx = day_index(day)
    terminals = np.asarray(terminals, dtype=np.int64)
    start = np.full(len(terminals), -1, dtype=np.int64)
    open_ = np.isin(terminals, _bad_terminals(seed, idx, n_terminals))
    d = idx
    while open_.any():
        start[open_] = d
        d -= 1
        open_ &= np.isin(terminals, _bad_terminals(seed, d, n_terminals))
    return start


def generate_day(
    day: date,
    *,
    seed: int = 42,
    n_customers: int = 5000,
    n_terminals: int = 10000,
    drift_start: date | None = None,
) -> pd.DataFrame:
    """All transactions of ``day`` in contract dtypes plus ``tx_fraud_scenario``."""
    w = build_world(seed, n_customers, n_terminals)
    idx = day_index(day)
    rng = np.random.default_rng([seed, _S_TX, idx])

    n_tx = rng.poisson(w.mean_nb_tx_per_day)
    cust = np.repeat(np.arange(w.n_customers), n_tx)
    size = len(cust)
    secs = rng.normal(86400 / 2, 20000, size).astype(np.int64)  # truncation, as the handbook
    mean = w.mean_amount[cust]
    amount = rng.normal(mean, w.std_amount[cust])
    neg = amount < 0
    amount[neg] = rng.uniform(0, 2 * mean[neg])
    pick = rng.random(size)
    n_term = w.counts[cust]
    keep = (secs > 0) & (secs < 86400) & (n_term > 0)
    term_pos = w.offsets[cust] + np.floor(pick * n_term).astype(np.int64)

    cust, secs, amount, n_term = cust[keep], secs[keep], amount[keep], n_term[keep]
    terminal = w.terminal_index[np.minimum(term_pos[keep], len(w.terminal_index) - 1)]
    order = np.argsort(secs, kind="stable")
    cust, secs, amount, terminal = cust[order], secs[order], amount[order], terminal[order]
    n = len(cust)
    if n >= ROWS_PER_DAY_MAX:
        raise ValueError(f"sim_n_customers: {n} transactions on {day} exceed {ROWS_PER_DAY_MAX}")

    drifting = drift_start is not None and day >= drift_start
    if drifting:
        ramp = min(1.0, ((day - drift_start).days + 1) / DRIFT_RAMP_DAYS)
        amount = amount * (1 + DRIFT_INFLATION * ramp)
    amount = np.round(amount, 2)

    scenario = np.zeros(n, dtype=np.int8)
    scenario[amount > FRAUD_AMOUNT] = 1

    at_bad_terminal = np.isin(terminal, _bad_terminals(seed, idx, w.n_terminals))
    scenario[at_bad_terminal] = 2

    c_rate = CUSTOMERS_PER_DAY_PER_5K * w.n_customers / 5_000
    bad_customers = _active(seed, _S_CUST_COMP, idx, CUSTOMER_WINDOW_DAYS, w.n_customers, c_rate)
    hit = np.isin(cust, bad_customers)
    hit &= np.random.default_rng([seed, _S_CUST_FRAUD, idx]).random(n) < CUSTOMER_FRAUD_SHARE
    amount[hit] = np.round(amount[hit] * CUSTOMER_FRAUD_MULTIPLIER, 2)
    scenario[hit] = 3

    if drifting:
        lo, hi = DRIFT_NIGHT_AMOUNT
        night = (secs < DRIFT_NIGHT_HOUR * 3600) & (amount >= lo) & (amount <= hi)
        night &= ~at_bad_terminal & (scenario == 0)
        night &= np.random.default_rng([seed, _S_DRIFT, idx]).random(n) < DRIFT_NIGHT_FRAUD_P
        scenario[night] = 4

    midnight = np.datetime64(day.isoformat(), "ns")
    return pd.DataFrame(
        {
            c.TRANSACTION_ID: np.int64(idx) * ROWS_PER_DAY_MAX + np.arange(n, dtype=np.int64),
            c.TX_DATETIME: midnight + secs.astype("timedelta64[s]").astype("timedelta64[ns]"),
            c.CUSTOMER_ID: cust.astype(np.int64),
            c.TERMINAL_ID: terminal.astype(np.int64),
            c.TX_AMOUNT: amount.astype(np.float64),
            c.TX_FRAUD: (scenario > 0).astype(np.int8),
            SCENARIO: scenario,
        }
    )


def generate_days(start: date, end: date, **kwargs) -> pd.DataFrame:
    """Days ``start..end`` inclusive, concatenated (identical to generating each alone)."""
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return pd.concat([generate_day(d, **kwargs) for d in days], ignore_index=True)


def simulate_day(day: date, settings) -> pd.DataFrame:
    """``generate_day`` with the simulator knobs of ``settings`` (a ``Settings``)."""
    return generate_day(
        day,
        seed=settings.sim_seed,
        n_customers=settings.sim_n_customers,
        n_terminals=settings.sim_n_terminals,
        drift_start=settings.sim_drift_start,
    )
