"""Training/serving skew: the API's logged features against the batch engine's.

For the transactions the API scored on a day, the features are recomputed with the batch
engine (``build_features``) over the history the online engine had seen: the lake's
validated transactions of the look-back days before that day, plus the day's scored
requests themselves, in event order. Both engines read one definitions module, so the
expected mismatch is zero; any mismatch is an alert (a bug, a stale online store, or a
feature-version change), reported per feature with its rate and magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ml_platform.data.contract import (
    CUSTOMER_ID,
    REQUEST_COLUMNS,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
)

SKEW_COLUMNS = (
    "feature",
    "n_compared",
    "n_mismatch",
    "mismatch_rate",
    "max_abs_diff",
    "mean_abs_diff",
    "example_transaction_id",
)


@dataclass
class SkewResult:
    """Per-feature mismatch table plus the counts of what could be compared."""

    table: pd.DataFrame
    n_logged: int
    n_compared: int
    n_missing: int  # logged transactions the batch engine did not produce
    tolerance: float
    extra: dict = field(default_factory=dict)

    @property
    def mismatched_features(self) -> list[str]:
        return self.table.loc[self.table["n_mismatch"] > 0, "feature"].tolist()

    @property
    def ok(self) -> bool:
        return not self.mismatched_features and self.n_missing == 0

    def summary(self) -> dict:
        return {
            "n_logged": self.n_logged,
            "n_compared": self.n_compared,
            "n_missing": self.n_missing,
            "mismatched_features": self.mismatched_features,
            "max_mismatch_rate": float(self.table["mismatch_rate"].max())
            if len(self.table)
            else 0.0,
            "max_abs_diff": float(self.table["max_abs_diff"].max()) if len(self.table) else 0.0,
            "tolerance": self.tolerance,
        }


def compare_features(
    logged: pd.DataFrame,
    recomputed: pd.DataFrame,
    feature_columns: Sequence[str],
    *,
    tolerance: float = 1e-9,
) -> SkewResult:
    """Per-feature mismatch rate and magnitude between two tables keyed by transaction_id.

    A value mismatches when ``|online - batch| > tolerance * max(1, |batch|)`` (absolute
    for small values, relative for large ones) or when exactly one side is NaN.
    """
    cols = list(feature_columns)
    for name, frame in (("logged", logged), ("recomputed", recomputed)):
        missing = [c for c in (TRANSACTION_ID, *cols) if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}.{missing[0]}: column required for the skew comparison")
    online = logged.drop_duplicates(TRANSACTION_ID, keep="last").set_index(TRANSACTION_ID)
    batch = recomputed.drop_duplicates(TRANSACTION_ID, keep="last").set_index(TRANSACTION_ID)
    common = online.index.intersection(batch.index)
    n_missing = int(len(online) - len(common))
    a = online.loc[common, cols].to_numpy(dtype=np.float64)
    b = batch.loc[common, cols].to_numpy(dtype=np.float64)
    diff = np.abs(a - b)
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        mismatch = (diff > tolerance * np.maximum(1.0, np.abs(b))) | (nan_a != nan_b)
    diff = np.where(nan_a | nan_b, np.where(nan_a == nan_b, 0.0, np.inf), diff)
    n = len(common)
    rows = []
    ids = common.to_numpy()
    for j, col in enumerate(cols):
        bad = mismatch[:, j]
        k = int(bad.sum())
        rows.append(
            (
                col,
                n,
                k,
                k / n if n else 0.0,
                float(diff[:, j].max()) if n else 0.0,
                float(diff[bad, j].mean()) if k else 0.0,
                int(ids[np.argmax(bad)]) if k else None,
            )
        )
    table = pd.DataFrame(rows, columns=list(SKEW_COLUMNS))
    table["example_transaction_id"] = table["example_transaction_id"].astype("Int64")
    return SkewResult(table, len(online), n, n_missing, tolerance)


def recompute_batch_features(
    requests: pd.DataFrame, history: pd.DataFrame, label_delay_days: int
) -> pd.DataFrame:
    """Batch-engine features of ``requests`` given the ``history`` seen before them.

    ``history`` holds validated transactions (with labels) strictly before the requests'
    day; requests carry no label (0 is used: a label only enters delayed windows, which
    never reach back into the same day). History rows win on duplicate transaction ids.
    """
    from ml_platform.features import build_features

    missing = [c for c in REQUEST_COLUMNS if c not in requests.columns]
    if missing:
        raise ValueError(f"requests.{missing[0]}: column required to recompute features")
    req = requests[list(REQUEST_COLUMNS)].drop_duplicates(TRANSACTION_ID, keep="last")
    req = req.assign(
        **{
            TX_DATETIME: pd.to_datetime(req[TX_DATETIME]).astype("datetime64[ns]"),
            TRANSACTION_ID: req[TRANSACTION_ID].astype("int64"),
            CUSTOMER_ID: req[CUSTOMER_ID].astype("int64"),
            TERMINAL_ID: req[TERMINAL_ID].astype("int64"),
            TX_AMOUNT: req[TX_AMOUNT].astype("float64"),
            TX_FRAUD: np.int8(0),
        }
    )
    cols = [*REQUEST_COLUMNS, TX_FRAUD]
    if len(history):
        hist = history[cols]
        req = req[~req[TRANSACTION_ID].isin(hist[TRANSACTION_ID])]
        both = pd.concat([hist, req], ignore_index=True)
    else:
        both = req
    feats = build_features(both, label_delay_days=label_delay_days)
    return feats[feats[TRANSACTION_ID].isin(requests[TRANSACTION_ID])]


def serving_skew(
    requests: pd.DataFrame,
    logged_features: pd.DataFrame,
    history: pd.DataFrame,
    feature_columns: Sequence[str],
    *,
    label_delay_days: int,
    tolerance: float = 1e-9,
) -> SkewResult:
    """Recompute the requests' features in batch and compare with the logged ones.

    ``requests`` holds the request fields the API received; ``logged_features`` the
    features it logged (transaction_id + feature columns; kept apart from the request
    because ``tx_amount`` is both a request field and a feature).
    """
    if requests.empty:
        empty = pd.DataFrame(columns=list(SKEW_COLUMNS))
        return SkewResult(empty, 0, 0, 0, tolerance)
    recomputed = recompute_batch_features(requests, history, label_delay_days)
    return compare_features(logged_features, recomputed, feature_columns, tolerance=tolerance)


def split_log(
    log: pd.DataFrame, feature_columns: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A prediction-log frame with a JSON ``features`` column -> (requests, logged features)."""
    import json

    if "features" not in log.columns:
        raise ValueError("log.features: JSON feature column required (read it unexpanded)")
    requests = log[list(REQUEST_COLUMNS)].reset_index(drop=True)
    feats = pd.DataFrame.from_records([json.loads(f) for f in log["features"]])
    missing = [c for c in feature_columns if c not in feats.columns]
    if len(log) and missing:
        raise ValueError(f"log.features.{missing[0]}: feature missing from the logged features")
    feats = feats.reindex(columns=list(feature_columns))
    feats.insert(0, TRANSACTION_ID, log[TRANSACTION_ID].to_numpy())
    return requests, feats
