"""Sample daily files for a scaffolded use case, so it runs before your own data arrives.

Accounts buy items; an item turns bad for a few days now and then (its events are then often
positive), and an amount far above the account's usual one is suspicious: the signal the
declared features can find. Deterministic per day.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

N_ACCOUNTS = 300
N_ITEMS = 40
EVENTS_PER_DAY = 1500


def sample_day(day: date, seed: int = 0) -> pd.DataFrame:
    """One day of events with their labels."""
    ordinal = day.toordinal()
    rng = np.random.default_rng([seed, ordinal])
    n = EVENTS_PER_DAY
    account = rng.integers(0, N_ACCOUNTS, n)
    item = rng.integers(0, N_ITEMS, n)
    usual = np.random.default_rng(seed).uniform(5, 100, N_ACCOUNTS)  # per account, fixed
    spike = rng.random(n) < 0.02
    amount = np.round(usual[account] * rng.lognormal(0, 0.3, n) * np.where(spike, 5, 1), 2)
    # an item is bad during 3-day spells that start on a few days of each item's own cycle
    bad = (ordinal + np.arange(N_ITEMS) * 7) % 29 < 3
    p = 0.01 + 0.35 * bad[item] + 0.25 * spike
    seconds = np.sort(rng.integers(0, 86_400, n))
    return pd.DataFrame(
        {
            "event_id": ordinal * 100_000 + np.arange(n),
            "event_time": pd.Timestamp(day) + pd.to_timedelta(seconds, unit="s"),
            "account": [f"acct-{a:04d}" for a in account],
            "item": [f"item-{i:02d}" for i in item],
            "amount": amount,
            "label": (rng.random(n) < p).astype(int),
        }
    )


def write_sample(folder: Path, start: date, days: int, seed: int = 0) -> list[Path]:
    """Write ``days`` daily CSV files from ``start`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(days):
        day = start + timedelta(days=i)
        path = folder / f"{day.isoformat()}.csv"
        sample_day(day, seed).to_csv(path, index=False)
        paths.append(path)
    return paths
