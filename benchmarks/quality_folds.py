"""Quality on validation folds only: the quality protocol shifted back 14/21/28 days.

Why: every modelling choice (features, LightGBM parameters) must be made without looking at
the real test week (2018-08-08..14 in ``benchmarks/quality.py``). This script reproduces the
README's fold protocol on the same full-scale source files:

* features from ``ml_platform.features.build_features`` over all 183 days at once (they are
  point-in-time, so this equals the backtest's look-back materialization), joined with the
  validated transactions exactly as the backtest's lake tables are;
* per fold (training windows 07-11..17, 07-04..10, 06-27..07-03; 7-day label delay; test =
  the following week): the backtest's tuning, i.e. both candidates fitted on the protocol
  shifted back once more (``inner_validation_windows``), LightGBM rounds from early stopping
  there, LightGBM vs baseline by the AP margin, refit on the fold's training window, then
  ``metrics.protocol_metrics`` on the fold's test week;
* optional extra point-in-time feature columns (computed here from the transactions: only
  rows at or before the transaction, labels only through windows ending ``label_delay`` days
  back) and LightGBM parameter overrides, as named variants.

Prints one JSON object: per variant the fold means and per-fold AUC / AP / CP@100.

The variants are the record of what was tried (README, "Quality"). Four of the extra columns
were adopted into the platform's definitions (FEATURE_VERSION 61ba088cd333d10d):
``terminal_days_since_first_fraud_30d``, ``terminal_fraud_share_since_first_30d`` and
``terminal_fraud_mean_amount_{7,30}d`` = ``terminal_id_days_since_first_fraud``,
``terminal_id_fraud_share_since_first_fraud``, ``terminal_id_fraud_avg_amount_{7,30}day_window``;
since then ``base`` includes them and the variants that add them again measure nothing new.

Usage: ``uv run python benchmarks/quality_folds.py [--variants base,ratios] [--list]
[--scores-dir DIR]`` (the scores feed ``benchmarks/quality_ceiling.py --scores``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import START, source_dir  # noqa: E402

from ml_platform.data.contract import (  # noqa: E402
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)

LABEL_DELAY = 7
TRAIN_DAYS = 7
#: The real test week starts 2018-08-08 (training 07-25..31); folds are shifted back by these.
REAL_TRAIN_START = date(2018, 7, 25)
FOLD_SHIFTS = (14, 21, 28)
METRICS = ("roc_auc", "average_precision", "card_precision_at_100")
DAY_S = 86_400


# --------------------------------------------------------------------------- data


def load_transactions(seed: int, last_day: date) -> pd.DataFrame:
    """Validated transactions from the first source day to ``last_day``, in event order."""
    from ml_platform.data.sources import read_file, source_file
    from ml_platform.data.validation import validate_transactions

    src, _ = source_dir(seed)
    parts = []
    day = START
    while day <= last_day:
        valid, _ = validate_transactions(read_file(source_file(src, day)), day)
        parts.append(valid)
        day += timedelta(days=1)
    tx = pd.concat(parts, ignore_index=True)
    return tx.sort_values([TX_DATETIME, TRANSACTION_ID], kind="stable", ignore_index=True)


def labeled_frame(tx: pd.DataFrame) -> pd.DataFrame:
    """Platform features + label columns, one row per transaction, in ``tx`` order."""
    from ml_platform.features import build_features
    from ml_platform.training import datasets

    out = datasets.join_labels(build_features(tx, label_delay_days=LABEL_DELAY), tx)
    if not np.array_equal(out[TRANSACTION_ID].to_numpy(), tx[TRANSACTION_ID].to_numpy()):
        raise AssertionError("join_labels changed the row order")
    return out


# --------------------------------------------------------------- extra features


class _Entity:
    """Rows of one entity sorted by (entity, time, id), with window edges by searchsorted."""

    def __init__(self, tx: pd.DataFrame, entity: str):
        t = tx[TX_DATETIME].to_numpy(dtype="datetime64[s]").astype(np.int64)
        self.t0 = t - t.min()
        ent = tx[entity].to_numpy(np.int64)
        ids = tx[TRANSACTION_ID].to_numpy(np.int64)
        self.order = np.lexsort((ids, self.t0, ent))
        e = ent[self.order]
        code = np.zeros(len(e), dtype=np.int64)
        np.cumsum(e[1:] != e[:-1], out=code[1:])
        self.code = code
        self.ts = self.t0[self.order]
        self.stride = int(self.ts.max()) + 100 * DAY_S
        self.key = code * self.stride + self.ts
        self.n = len(e)

    def edge(self, offset_s: int) -> np.ndarray:
        """Sorted position of the entity's first row with time > t - offset (per sorted row)."""
        return np.searchsorted(self.key, self.key - offset_s, side="right")

    def window(self, w_days: int, delay_days: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Sorted [start, end) of (t - delay - w, t - delay]; no delay: up to the row itself."""
        start = self.edge((w_days + delay_days) * DAY_S)
        end = self.edge(delay_days * DAY_S) if delay_days else np.arange(1, self.n + 1)
        return start, end

    def prefix(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n + 1)
        np.cumsum(values[self.order], out=out[1:])
        return out

    def to_input(self, sorted_values: np.ndarray) -> np.ndarray:
        out = np.empty(self.n)
        out[self.order] = sorted_values
        return out

    def rolling_max(self, values: np.ndarray, w_days: int) -> np.ndarray:
        """Max of ``values`` over the entity's rows in (t - w, t], event order (input order)."""
        s = pd.Series(values[self.order], index=pd.to_datetime(self.ts, unit="s"))
        r = s.groupby(self.code).rolling(f"{w_days}D").max().to_numpy()
        return self.to_input(r)


def _safe_div(a: np.ndarray, b: np.ndarray, empty: float) -> np.ndarray:
    return np.divide(a, b, out=np.full(len(a), empty), where=b != 0)


def customer_signals(tx: pd.DataFrame, base: pd.DataFrame, k: float = 3.0) -> pd.DataFrame:
    """Label-free customer compromise signals (scenario 3: amounts x5 on a third of the tx).

    ``ratio`` = each transaction's own ``tx_amount / customer mean in (t-d-30d, t-d]`` (the
    platform's ``customer_id_amount_ratio_30day_delayed``): a baseline a recent compromise has
    not inflated yet. Aggregated over the customer's non-delayed windows (t-w, t], event order.
    """
    c = _Entity(tx, CUSTOMER_ID)
    amount = tx[TX_AMOUNT].to_numpy(np.float64)
    ratio = base["customer_id_amount_ratio_30day_delayed"].to_numpy()
    cs_amount = c.prefix(amount)
    ds, de = c.window(30, LABEL_DELAY)
    dmean = (cs_amount[de] - cs_amount[ds]) / np.maximum(de - ds, 1)
    out: dict[str, np.ndarray] = {}
    high = (ratio > k).astype(np.float64)
    cs_high = c.prefix(high)
    for w in (1, 7):
        s, e = c.window(w)
        n = e - s
        mean_w = (cs_amount[e] - cs_amount[s]) / np.maximum(n, 1)
        out[f"customer_mean_{w}d_over_delayed_30d"] = c.to_input(_safe_div(mean_w, dmean, 1.0))
        out[f"customer_nb_high_ratio_{w}d"] = c.to_input(cs_high[e] - cs_high[s])
        out[f"customer_share_high_ratio_{w}d"] = c.to_input((cs_high[e] - cs_high[s]) / n)
    out["customer_max_ratio_7d"] = c.rolling_max(ratio, 7)
    return pd.DataFrame(out)


def terminal_first_fraud(tx: pd.DataFrame, w: int = 30) -> pd.DataFrame:
    """Days since the OLDEST known fraud of the terminal in (t-d-w, t-d] (d+w when none).

    Why: a compromised terminal stays fraudulent for a fixed spell (28 days in the simulator),
    so the age of the spell's first known fraud says when it is about to end; the newest
    fraud (``terminal_id_days_since_fraud``) cannot say that. Also the fraud share since that
    first fraud (all transactions since a compromise are fraud; isolated frauds are not).
    """
    c = _Entity(tx, TERMINAL_ID)
    fraud = tx[TX_FRAUD].to_numpy(np.float64)[c.order]
    s, e = c.window(w, LABEL_DELAY)
    pos = np.arange(c.n)
    nxt = np.where(fraud > 0, pos, c.n)
    nxt = np.minimum.accumulate(nxt[::-1])[::-1]  # first fraud at a sorted position >= i
    first = np.append(nxt, c.n)[s]
    hit = first < e
    days = np.full(c.n, float(LABEL_DELAY + w))
    days[hit] = (c.ts[hit] - c.ts[first[hit]]) / DAY_S
    cs_f = c.prefix(tx[TX_FRAUD].to_numpy(np.float64))
    since = np.where(hit, e - first, 0)
    frauds = cs_f[e] - cs_f[s]
    share = _safe_div(frauds, since.astype(np.float64), 0.0)
    return pd.DataFrame(
        {
            f"terminal_days_since_first_fraud_{w}d": c.to_input(days),
            f"terminal_fraud_share_since_first_{w}d": c.to_input(share),
        }
    )


def terminal_plain_frauds(
    tx: pd.DataFrame, base: pd.DataFrame, k: float = 2.0, suffix: str = ""
) -> pd.DataFrame:
    """Known terminal frauds NOT explained by an amount anomaly, in (t-d-w, t-d].

    Why: a fraud whose amount is ordinary for its customer (own delayed 30-day ratio <= k)
    points at the terminal (a compromise: every later transaction there is fraud), while a
    fraud with a spiking amount points at the customer or the amount and says little about
    the terminal. Counts for w = 1/7/30, and days since the oldest such fraud (w = 30).
    """
    c = _Entity(tx, TERMINAL_ID)
    ratio = base["customer_id_amount_ratio_30day_delayed"].to_numpy()
    plain = ((tx[TX_FRAUD].to_numpy() == 1) & (ratio <= k)).astype(np.float64)
    cs = c.prefix(plain)
    out: dict[str, np.ndarray] = {}
    for w in (1, 7, 30):
        s, e = c.window(w, LABEL_DELAY)
        out[f"terminal_nb_plain{suffix}_fraud_{w}d"] = c.to_input(cs[e] - cs[s])
    pos = np.arange(c.n)
    nxt = np.minimum.accumulate(np.where(plain[c.order] > 0, pos, c.n)[::-1])[::-1]
    first = np.append(nxt, c.n)[s]
    hit = first < e
    days = np.full(c.n, float(LABEL_DELAY + 30))
    days[hit] = (c.ts[hit] - c.ts[first[hit]]) / DAY_S
    out[f"terminal_days_since_first_plain{suffix}_fraud_30d"] = c.to_input(days)
    return pd.DataFrame(out)


def terminal_fraud_amount(tx: pd.DataFrame) -> pd.DataFrame:
    """Mean amount of the terminal's known frauds in (t-d-w, t-d] (0 when none), w = 7/30.

    Why: the single-entity cousin of the "plain fraud" counts (prefix sums of amount x fraud,
    nothing from another entity): frauds of ordinary amounts point at a compromised terminal,
    frauds of spiking amounts at the card or the amount.
    """
    c = _Entity(tx, TERMINAL_ID)
    fraud = tx[TX_FRAUD].to_numpy(np.float64)
    cs_f = c.prefix(fraud)
    cs_fa = c.prefix(fraud * tx[TX_AMOUNT].to_numpy(np.float64))
    out: dict[str, np.ndarray] = {}
    for w in (7, 30):
        s, e = c.window(w, LABEL_DELAY)
        out[f"terminal_fraud_mean_amount_{w}d"] = c.to_input(
            _safe_div(cs_fa[e] - cs_fa[s], cs_f[e] - cs_f[s], 0.0)
        )
    return pd.DataFrame(out)


def terminal_customers(tx: pd.DataFrame) -> pd.DataFrame:
    """Label-free terminal activity: tx in (t-1d, t] over the terminal's daily mean of 30 days."""
    c = _Entity(tx, TERMINAL_ID)
    s1, e1 = c.window(1)
    s30, e30 = c.window(30)
    n1, n30 = e1 - s1, e30 - s30
    return pd.DataFrame({"terminal_tx_1d_over_30d": c.to_input(_safe_div(n1 * 30.0, n30, 1.0))})


#: Column-name prefix -> builder of the columns that carry it.
EXTRA_BUILDERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]] = {
    "customer_": customer_signals,
    "terminal_days_since_first_fraud_30d": lambda tx, base: terminal_first_fraud(tx, 30),
    "terminal_fraud_share_since_first_30d": lambda tx, base: terminal_first_fraud(tx, 30),
    "terminal_days_since_first_fraud_60d": lambda tx, base: terminal_first_fraud(tx, 60),
    "terminal_tx_1d": lambda tx, base: terminal_customers(tx),
    "terminal_fraud_mean_amount": lambda tx, base: terminal_fraud_amount(tx),
    "terminal_nb_plain_fraud": terminal_plain_frauds,
    "terminal_nb_plain_k3": lambda tx, base: terminal_plain_frauds(tx, base, 3.0, "_k3"),
    "terminal_days_since_first_plain_fraud": terminal_plain_frauds,
}


# ------------------------------------------------------------------------ folds


@dataclass
class Variant:
    """A named change: extra feature columns, LightGBM overrides, seeds to average."""

    extra: list[str] = field(default_factory=list)
    drop: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    note: str = ""


VARIANTS: dict[str, Variant] = {
    "base": Variant(note="the platform as committed"),
    "cust_all": Variant(
        extra=[
            "customer_mean_1d_over_delayed_30d",
            "customer_mean_7d_over_delayed_30d",
            "customer_nb_high_ratio_1d",
            "customer_nb_high_ratio_7d",
            "customer_share_high_ratio_1d",
            "customer_share_high_ratio_7d",
            "customer_max_ratio_7d",
        ]
    ),
    "cust_mean_ratios": Variant(
        extra=["customer_mean_1d_over_delayed_30d", "customer_mean_7d_over_delayed_30d"]
    ),
    "cust_high_counts": Variant(extra=["customer_nb_high_ratio_1d", "customer_nb_high_ratio_7d"]),
    "cust_max7": Variant(extra=["customer_max_ratio_7d"]),
    "term_first": Variant(extra=["terminal_days_since_first_fraud_30d"]),
    "term_first_share": Variant(
        extra=["terminal_days_since_first_fraud_30d", "terminal_fraud_share_since_first_30d"]
    ),
    "term_first60": Variant(extra=["terminal_days_since_first_fraud_60d"]),
    "term_activity": Variant(extra=["terminal_tx_1d_over_30d"]),
    "term_plain": Variant(
        extra=[
            "terminal_nb_plain_fraud_1d",
            "terminal_nb_plain_fraud_7d",
            "terminal_nb_plain_fraud_30d",
            "terminal_days_since_first_plain_fraud_30d",
        ]
    ),
    "term_plain_first_share": Variant(
        extra=[
            "terminal_nb_plain_fraud_1d",
            "terminal_nb_plain_fraud_7d",
            "terminal_nb_plain_fraud_30d",
            "terminal_days_since_first_plain_fraud_30d",
            "terminal_days_since_first_fraud_30d",
            "terminal_fraud_share_since_first_30d",
        ]
    ),
    "term_plain_k3": Variant(
        extra=[
            "terminal_nb_plain_k3_fraud_1d",
            "terminal_nb_plain_k3_fraud_7d",
            "terminal_nb_plain_k3_fraud_30d",
            "terminal_days_since_first_plain_k3_fraud_30d",
            "terminal_days_since_first_fraud_30d",
            "terminal_fraud_share_since_first_30d",
        ]
    ),
    "term_famount_first_share": Variant(
        extra=[
            "terminal_fraud_mean_amount_7d",
            "terminal_fraud_mean_amount_30d",
            "terminal_days_since_first_fraud_30d",
            "terminal_fraud_share_since_first_30d",
        ]
    ),
    "seed11": Variant(params={"seed": 11}),
    "seed13": Variant(params={"seed": 13}),
    "leaves15": Variant(params={"num_leaves": 15}),
    "leaves63": Variant(params={"num_leaves": 63}),
    "mcs20": Variant(params={"min_child_samples": 20}),
    "mcs200": Variant(params={"min_child_samples": 200}),
    "ff05": Variant(params={"feature_fraction": 0.5}),
    "lr02": Variant(params={"learning_rate": 0.02}),
    "spw1": Variant(params={"scale_pos_weight": 1.0}),
    "xentropy": Variant(params={"objective": "cross_entropy"}),
    "bag3": Variant(seeds=[7, 11, 13], note="mean of 3 LightGBM seeds (not one booster)"),
}


def combine(parts: list[Variant]) -> Variant:
    """One variant with every part's columns and params (later parts override params)."""
    out = Variant()
    for v in parts:
        out.extra += [c for c in v.extra if c not in out.extra]
        out.drop += v.drop
        out.params |= v.params
        out.seeds = v.seeds or out.seeds
        out.note = "; ".join(x for x in (out.note, v.note) if x)
    return out


def fold_starts() -> list[date]:
    return [REAL_TRAIN_START - timedelta(days=s) for s in FOLD_SHIFTS]


def run_fold(
    labeled: pd.DataFrame,
    train_start: date,
    columns: list[str],
    v: Variant,
    threads: int,
    scores_dir: Path | None = None,
) -> dict[str, Any]:
    """The backtest's ``train_and_score`` for one fold, with the variant's options."""
    from ml_platform.training import datasets, metrics, models

    train_end = train_start + timedelta(days=TRAIN_DAYS - 1)
    test_start = train_end + timedelta(days=LABEL_DELAY + 1)
    test_end = test_start + timedelta(days=TRAIN_DAYS - 1)
    final = datasets.Windows(train_start, train_end, test_start, test_end, LABEL_DELAY)
    train, test = datasets.split(labeled, final)
    inner = datasets.inner_validation_windows(train_start, train_end, LABEL_DELAY)
    itrain, ivalid = datasets.split(labeled, inner)
    seeds = v.seeds or [None]
    scores, rounds, kinds = [], [], []
    for seed in seeds:
        params = {**v.params, **({"seed": seed} if seed is not None else {})}
        cands = models.train_candidates(itrain, ivalid, columns, threads=threads, lgb_params=params)
        kind, n_rounds = cands.chosen.kind, cands.lightgbm.best_iteration
        if kind == models.LIGHTGBM:
            model = models.fit_lightgbm(
                train, columns, params=params, num_boost_round=n_rounds, threads=threads
            )
        else:
            model = models.fit_baseline(train, columns)
        scores.append(model.score(test))
        rounds.append(n_rounds)
        kinds.append(kind)
    score = np.mean(scores, axis=0)
    if scores_dir is not None:  # for benchmarks/quality_ceiling.py --scores
        scores_dir.mkdir(parents=True, exist_ok=True)
        out = pd.DataFrame({TRANSACTION_ID: test[TRANSACTION_ID].to_numpy(), "score": score})
        out.to_parquet(scores_dir / f"fold_{train_start}.parquet", index=False)
    day = labeled[TX_DATETIME].dt.normalize()
    history = labeled[(day >= pd.Timestamp(train_start)) & (day <= pd.Timestamp(test_end))]
    m = metrics.protocol_metrics(
        test, score, history, first_train_day=train_start, label_delay=LABEL_DELAY
    )
    return {
        "train": f"{train_start}..{train_end}",
        "test": f"{test_start}..{test_end}",
        **{k: round(m[k], 4) for k in METRICS},
        "cp100_per_day": m["card_precision_at_100_per_day"],
        "rounds": rounds,
        "kind": sorted(set(kinds)),
    }


def run_variant(
    labeled: pd.DataFrame, name: str, v: Variant, threads: int, scores_dir: Path | None = None
) -> dict[str, Any]:
    from ml_platform.features import FEATURE_COLUMNS

    columns = [c for c in FEATURE_COLUMNS if c not in v.drop] + v.extra
    t = time.perf_counter()
    out = scores_dir / name if scores_dir else None
    folds = [run_fold(labeled, s, columns, v, threads, out) for s in fold_starts()]
    mean = {k: round(float(np.mean([f[k] for f in folds])), 4) for k in METRICS}
    return {
        "variant": name,
        "note": v.note,
        "n_features": len(columns),
        "extra": v.extra,
        "params": v.params,
        "mean": mean,
        "folds": folds,
        "seconds": round(time.perf_counter() - t, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--variants", default="base", help="comma-separated names (see --list)")
    p.add_argument(
        "--with",
        dest="with_",
        default="",
        help="comma-separated variants whose extra columns and params every run adds",
    )
    p.add_argument("--list", action="store_true", help="print the variant names and exit")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--scores-dir",
        type=Path,
        help="write each fold's test scores to DIR/<variant>/fold_<train start>.parquet",
    )
    args = p.parse_args()
    if args.list:
        print(json.dumps({k: v.__dict__ for k, v in VARIANTS.items()}, indent=1))
        return
    names = args.variants.split(",")
    common = [w for w in args.with_.split(",") if w]
    unknown = [n for n in names + common if n not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")

    t = time.perf_counter()
    last_test_day = max(fold_starts()) + timedelta(days=TRAIN_DAYS + LABEL_DELAY + TRAIN_DAYS - 1)
    tx = load_transactions(args.seed, last_test_day)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    labeled = labeled_frame(tx)
    base_s = time.perf_counter() - t
    variants = {n: combine([*(VARIANTS[w] for w in common), VARIANTS[n]]) for n in names}
    needed = {c for v in variants.values() for c in v.extra}
    extra_s: dict[str, float] = {}
    for prefix, build in EXTRA_BUILDERS.items():
        if not any(c.startswith(prefix) and c not in labeled.columns for c in needed):
            continue
        t = time.perf_counter()
        cols = build(tx, labeled)
        for c in cols.columns:
            labeled[c] = cols[c].to_numpy()
        extra_s[prefix] = round(time.perf_counter() - t, 1)
    results = []
    for n in names:
        r = run_variant(labeled, "+".join([*common, n]), variants[n], args.threads, args.scores_dir)
        results.append(r)
        print(json.dumps({"variant": n, **r["mean"], "seconds": r["seconds"]}), file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "quality_folds",
                "protocol": "train 7 days, delay 7, test the next 7 days; known-compromised "
                "customers dropped; CP@100 with detected cards removed; rounds and model "
                "kind tuned one fold further back, as ml-platform backtest does",
                "folds": [
                    f"train {s}..{s + timedelta(days=TRAIN_DAYS - 1)}" for s in fold_starts()
                ],
                "rows": int(len(labeled)),
                "seconds": {
                    "load": round(load_s, 1),
                    "platform_features": round(base_s, 1),
                    "extra_features": extra_s,
                },
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
