"""Training/serving skew: the API's logged features against the batch engine's.

For the events the API scored on a day, the features are recomputed with the batch engine
(``build_features``) over the history the online engine had seen: the lake's validated
events of the look-back days before that day (and the side tables' rows its as-of joins
read), plus the day's scored requests themselves, in event order. Both engines read one
definitions module, so the expected mismatch is zero; any mismatch is an alert (a bug, a
stale online store, or a feature-version change), reported per feature with its rate and
magnitude. Every function reads one use case's columns (``use_case``, default: the flagship).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.monitoring.monitored import Monitored

if TYPE_CHECKING:
    from ml_platform.use_cases import UseCase


def skew_columns(use_case: UseCase | str | None = None) -> tuple[str, ...]:
    """Columns of the skew table; the example is ``example_<event id>``."""
    event_id = Monitored.of(use_case).event_id
    return (
        "feature",
        "n_compared",
        "n_mismatch",
        "mismatch_rate",
        "max_abs_diff",
        "mean_abs_diff",
        f"example_{event_id}",
    )


def request_columns(use_case: UseCase | str | None = None) -> tuple[str, ...]:
    """The request fields the prediction log holds (a derived event id first)."""
    return tuple(Monitored.of(use_case).request_types)


def __getattr__(name: str) -> Any:
    """``REQUEST_COLUMNS`` / ``SKEW_COLUMNS``: the flagship's, read from its declaration."""
    if name == "REQUEST_COLUMNS":
        return request_columns()
    if name == "SKEW_COLUMNS":
        return skew_columns()
    raise AttributeError(name)


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
    use_case: UseCase | str | None = None,
) -> SkewResult:
    """Per-feature mismatch rate and magnitude between two tables keyed by the event id.

    A value mismatches when ``|online - batch| > tolerance * max(1, |batch|)`` (absolute
    for small values, relative for large ones) or when exactly one side is NaN.
    """
    key = Monitored.of(use_case).event_id
    columns = skew_columns(use_case)
    cols = list(feature_columns)
    for name, frame in (("logged", logged), ("recomputed", recomputed)):
        missing = [c for c in (key, *cols) if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}.{missing[0]}: column required for the skew comparison")
    online = logged.drop_duplicates(key, keep="last").set_index(key)
    batch = recomputed.drop_duplicates(key, keep="last").set_index(key)
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
                ids[np.argmax(bad)] if k else None,
            )
        )
    table = pd.DataFrame(rows, columns=list(columns))
    example = columns[-1]
    numeric = pd.api.types.is_integer_dtype(online.index.dtype)
    table[example] = table[example].astype("Int64" if numeric else "string")
    return SkewResult(table, len(online), n, n_missing, tolerance)


def recompute_batch_features(
    requests: pd.DataFrame,
    history: pd.DataFrame,
    label_delay_days: int,
    *,
    use_case: UseCase | str | None = None,
    side_tables: Mapping[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Batch-engine features of ``requests`` given the ``history`` seen before them.

    ``history`` holds validated events (with labels) strictly before the requests' day;
    requests carry no label: 0 is used, known (for a per-row label) only at the latest its
    declaration allows, so it never enters a window of the same day's requests, as online.
    History rows win on duplicate event ids. ``side_tables`` feed the as-of joins.
    """
    from ml_platform.features import build_features
    from ml_platform.features.definitions import feature_set

    m = Monitored.of(use_case)
    fs = feature_set(m.use_case)
    key, time = fs.event_id, fs.event_time
    fields = request_columns(m.use_case)
    missing = [c for c in fields if c not in requests.columns]
    if missing:
        raise ValueError(f"requests.{missing[0]}: column required to recompute features")
    req = requests[list(fields)].drop_duplicates(key, keep="last")
    typed = {
        c: req[c].astype(t) if t != "datetime64[ns]" else pd.to_datetime(req[c]).astype(t)
        for c, t in m.request_types.items()
    }
    label = np.int8(0) if fs.label_task == "binary" else np.float64(0.0)
    req = req.assign(**typed, **{fs.label: label})
    cols = [c for c in dict.fromkeys([*fields, *fs.input_columns, fs.label])]
    if fs.known_at is not None and fs.known_at not in fields:
        latest = pd.Timedelta(fs.known_within_ns or 0, "ns") + pd.Timedelta(1, "ns")
        req[fs.known_at] = req[time] + latest
    if len(history):
        hist = history[[c for c in cols if c in history.columns]]
        req = req[~req[key].isin(hist[key])]
        both = pd.concat([hist, req[hist.columns]], ignore_index=True)
    else:
        both = req
    feats = build_features(
        both, label_delay_days=label_delay_days, use_case=m.use_case, side_tables=side_tables
    )
    return feats[feats[key].isin(requests[key])]


def serving_skew(
    requests: pd.DataFrame,
    logged_features: pd.DataFrame,
    history: pd.DataFrame,
    feature_columns: Sequence[str],
    *,
    label_delay_days: int,
    tolerance: float = 1e-9,
    use_case: UseCase | str | None = None,
    side_tables: Mapping[str, pd.DataFrame] | None = None,
) -> SkewResult:
    """Recompute the requests' features in batch and compare with the logged ones.

    ``requests`` holds the request fields the API received; ``logged_features`` the
    features it logged (event id + feature columns; kept apart from the request because a
    ``value`` feature is both a request field and a feature).
    """
    if requests.empty:
        empty = pd.DataFrame(columns=list(skew_columns(use_case)))
        return SkewResult(empty, 0, 0, 0, tolerance)
    recomputed = recompute_batch_features(
        requests, history, label_delay_days, use_case=use_case, side_tables=side_tables
    )
    return compare_features(
        logged_features, recomputed, feature_columns, tolerance=tolerance, use_case=use_case
    )


def split_log(
    log: pd.DataFrame, feature_columns: Sequence[str], *, use_case: UseCase | str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A prediction-log frame with a JSON ``features`` column -> (requests, logged features)."""
    import json

    key = Monitored.of(use_case).event_id
    if "features" not in log.columns:
        raise ValueError("log.features: JSON feature column required (read it unexpanded)")
    requests = log[list(request_columns(use_case))].reset_index(drop=True)
    feats = pd.DataFrame.from_records([json.loads(f) for f in log["features"]])
    missing = [c for c in feature_columns if c not in feats.columns]
    if len(log) and missing:
        raise ValueError(f"log.features.{missing[0]}: feature missing from the logged features")
    feats = feats.reindex(columns=list(feature_columns))
    feats.insert(0, key, log[key].to_numpy())
    return requests, feats
