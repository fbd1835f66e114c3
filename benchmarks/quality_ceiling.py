"""How much card precision@100 ANY point-in-time model can reach on the protocol's weeks.

Why: CP@100 counts compromised cards in each day's top 100, and some frauds cannot be seen
at scoring time by anything. The simulator's ground truth says which. Every fraud of a test
window (after the protocol's filter) falls in one class:

* ``amount`` - amount > 220 (scenario 1's rule: the amount itself shows it);
* ``customer`` - a compromised customer's x5 amount (scenario 3), counted visible whatever
  its ratio to the customer's usual spending, so the ceiling is generous;
* ``terminal_known`` - a compromised terminal whose current spell already had a transaction
  more than the label delay ago: features with delayed labels know of its frauds;
* ``terminal_unknown`` - a compromised terminal whose spell is younger than the label
  delay: no label of it is known yet, and scenario 2 leaves amount, time and customer
  untouched, so nothing at scoring time tells these transactions apart.

``visible_only`` is the protocol's CP@100 of a model that finds every visible fraud (the first
three classes) and nothing else: the ceiling before chance hits. With ``--scores`` (the
``transaction_id, score`` file ``ml-platform backtest`` writes, e.g. the one
``benchmarks/quality.py`` leaves in ``benchmarks/results/``, or the fold scores of
``quality_folds.py --scores-dir``) the model's alerted cards of each window the files cover
are split by class, with the visible cards it never found. ``perfect_model_cp100`` is the
protocol's CP@100 of a perfect point-in-time model: every visible fraud on top, every other
transaction with a random score (a card keeps its highest, so busy cards draw more chance
hits, as with a real model); mean, 5th/95th percentile and the share of draws reaching the
0.31 target, over ``--draws`` draws.

Windows: the three validation folds of ``benchmarks/quality_folds.py`` and the test week of
``benchmarks/quality.py``. Prints one JSON object.

Usage: ``uv run python benchmarks/quality_ceiling.py [--scores FILE ...]``, e.g.
``--scores benchmarks/results/quality_scores.parquet results/folds/base/*.parquet``.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_folds import (  # noqa: E402
    DAY_S,
    LABEL_DELAY,
    REAL_TRAIN_START,
    TRAIN_DAYS,
    _Entity,
    fold_starts,
)

from ml_platform.data.contract import (  # noqa: E402
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)

VISIBLE = ("amount", "customer", "terminal_known")
CLASSES = (*VISIBLE, "terminal_unknown")
N_CUSTOMERS, N_TERMINALS = 5000, 10000
TARGET = 0.31  # the platform's CP@100 target


def fraud_classes(tx: pd.DataFrame, seed: int) -> np.ndarray:
    """Class of every transaction (``legit`` or one of ``CLASSES``) from the simulator's truth."""
    from ml_platform.data import simulator as sim

    t = tx[TX_DATETIME].to_numpy("datetime64[s]").astype(np.int64)
    day = t // DAY_S
    term = tx[TERMINAL_ID].to_numpy()
    spell_start = np.full(len(tx), -1, dtype=np.int64)
    for d in np.unique(day):
        rows = np.flatnonzero(day == d)
        the_day = sim.EPOCH + timedelta(days=int(d))
        spell_start[rows] = sim.terminal_compromise_start(
            the_day, term[rows], seed=seed, n_terminals=N_TERMINALS
        )
    # known: the terminal has a transaction in [spell start, t - delay] (its label is known)
    e = _Entity(tx, TERMINAL_ID)
    spell_key = e.code * e.stride + (spell_start[e.order] * DAY_S - t.min())
    first_in_spell = np.searchsorted(e.key, spell_key)
    known = e.to_input(first_in_spell < e.edge(LABEL_DELAY * DAY_S)).astype(bool)
    known &= spell_start >= 0

    scenario = tx["tx_fraud_scenario"].to_numpy()
    amount = tx[TX_AMOUNT].to_numpy()
    compromised = spell_start >= 0
    return np.select(
        [scenario == 3, amount > sim.FRAUD_AMOUNT, compromised & known, compromised],
        ["customer", "amount", "terminal_known", "terminal_unknown"],
        default=np.where(tx[TX_FRAUD].to_numpy() == 1, "other", "legit"),
    )


def protocol_window(tx: pd.DataFrame, train_start: date) -> pd.DataFrame:
    """The window's test transactions the protocol keeps (known-compromised customers out)."""
    from ml_platform.training import metrics

    test_start = train_start + timedelta(days=TRAIN_DAYS + LABEL_DELAY)
    test_end = test_start + timedelta(days=TRAIN_DAYS - 1)
    day = tx[TX_DATETIME].dt.normalize()
    test = tx[(day >= pd.Timestamp(test_start)) & (day <= pd.Timestamp(test_end))]
    history = tx[(day >= pd.Timestamp(train_start)) & (day <= pd.Timestamp(test_end))]
    keep = metrics.protocol_test_mask(
        test, history, first_train_day=train_start, label_delay=LABEL_DELAY
    )
    return test.loc[keep]


def card_classes(kept: pd.DataFrame) -> pd.DataFrame:
    """Per (day, card): its best fraud class that day (visible before unknown) or ``legit``."""
    rank = {c: i for i, c in enumerate((*CLASSES, "other", "legit"))}
    cards = kept.assign(day=kept[TX_DATETIME].dt.normalize(), r=kept["class"].map(rank))
    best = cards.groupby(["day", CUSTOMER_ID], as_index=False)["r"].min()
    best["class"] = np.array(list(rank))[best["r"].to_numpy()]
    return best.drop(columns="r")


def window_report(kept: pd.DataFrame, scores: pd.Series | None, draws: int) -> dict:
    from ml_platform.training import metrics

    cards = card_classes(kept)
    fraud_cards = cards[cards["class"] != "legit"]
    per_day = fraud_cards.groupby(["day", "class"]).size().unstack(fill_value=0)
    visible = kept["class"].isin(VISIBLE).to_numpy()
    only_visible = kept.assign(**{TX_FRAUD: visible.astype(np.int8)})
    cp_visible, cp_visible_days = metrics.protocol_card_precision_at_k(
        only_visible, visible.astype(float)
    )
    rng = np.random.default_rng(0)
    perfect = np.array(
        [
            metrics.protocol_card_precision_at_k(kept, visible + rng.random(len(kept)))[0]
            for _ in range(draws)
        ]
    )
    out = {
        "compromised_cards_per_day": {
            c: round(float(per_day[c].mean()), 1) for c in per_day.columns if c in CLASSES
        },
        "visible_only_cp100": round(cp_visible, 4),
        "visible_only_cp100_per_day": [round(v, 2) for v in cp_visible_days],
        "perfect_model_cp100": {
            "mean": round(float(perfect.mean()), 4),
            "p5": round(float(np.quantile(perfect, 0.05)), 4),
            "p95": round(float(np.quantile(perfect, 0.95)), 4),
            "share_reaching_0.31": round(float((perfect >= TARGET - 1e-9).mean()), 3),
            "draws": draws,
        },
    }
    if scores is None:
        return out
    score = kept[TRANSACTION_ID].map(scores).to_numpy()  # main passes only covering scores
    cp, _ = metrics.protocol_card_precision_at_k(kept, score)
    alerts = metrics.protocol_alerts(kept, score)
    alerts = alerts.merge(cards, on=["day", CUSTOMER_ID], how="left")
    hits = alerts[alerts[TX_FRAUD] == 1]["class"].value_counts()
    # visible cards the model never alerted on in the window (they may fall on several days)
    alerted = set(alerts.loc[alerts[TX_FRAUD] == 1, CUSTOMER_ID])
    vis = fraud_cards[fraud_cards["class"].isin(VISIBLE)]
    missed = vis[~vis[CUSTOMER_ID].isin(alerted)].drop_duplicates(CUSTOMER_ID)
    n_days = kept[TX_DATETIME].dt.normalize().nunique()
    out["model"] = {
        "cp100": round(cp, 4),
        "found_cards_per_day": {c: round(float(hits.get(c, 0)) / n_days, 2) for c in CLASSES},
        "visible_cards_never_found": int(len(missed)),
        "visible_cards_never_found_by_class": missed["class"].value_counts().to_dict(),
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--draws", type=int, default=200, help="random fills of the perfect model")
    p.add_argument(
        "--scores",
        type=Path,
        nargs="*",
        default=[],
        help="files of transaction_id, score: backtest outputs or quality_folds --scores-dir",
    )
    args = p.parse_args()
    from ml_platform.data import simulator as sim

    windows = {"test week": REAL_TRAIN_START} | {f"fold {s}": s for s in sorted(fold_starts())}
    first = min(windows.values()) - timedelta(days=5 * TRAIN_DAYS)  # spells begun earlier
    last = max(windows.values()) + timedelta(days=TRAIN_DAYS + LABEL_DELAY + TRAIN_DAYS - 1)
    tx = sim.generate_days(
        first, last, seed=args.seed, n_customers=N_CUSTOMERS, n_terminals=N_TERMINALS
    )
    tx["class"] = fraud_classes(tx, args.seed)
    scores = None
    if args.scores:
        read = {".parquet": pd.read_parquet, ".csv": pd.read_csv}
        unknown = [str(f) for f in args.scores if f.suffix not in read]
        if unknown:
            p.error(f"--scores: not .parquet or .csv: {unknown}")
        frames = [read[f.suffix](f) for f in args.scores]
        scores = pd.concat(frames).drop_duplicates(TRANSACTION_ID).set_index(TRANSACTION_ID)
        scores = scores["score"]
    report = {}
    for name, start in windows.items():
        kept = protocol_window(tx, start)
        covered = scores is not None and kept[TRANSACTION_ID].isin(scores.index).all()
        report[name] = {
            "train": f"{start}..{start + timedelta(days=TRAIN_DAYS - 1)}",
            **window_report(kept, scores if covered else None, args.draws),
        }
    print(
        json.dumps(
            {
                "benchmark": "quality_ceiling",
                "protocol": "train 7 days, delay 7, test 7 days; known-compromised customers "
                "dropped; CP@100 with detected cards removed",
                "visible": list(VISIBLE),
                "windows": report,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
