"""The training steps the Dagster assets call: build the set, train + register, gate.

Plain Python (no Dagster): each function takes settings and data, returns plain results.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd

from ml_platform.data import lake
from ml_platform.data.contract import TX_DATETIME
from ml_platform.settings import Settings
from ml_platform.training import datasets

WINDOW_COLUMN = "window"  # "train" / "valid" in the stored training set


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # features + labels, with WINDOW_COLUMN
    windows: datasets.Windows
    as_of: date

    @property
    def train(self) -> pd.DataFrame:
        return self.frame[self.frame[WINDOW_COLUMN] == "train"].reset_index(drop=True)

    @property
    def valid(self) -> pd.DataFrame:
        return self.frame[self.frame[WINDOW_COLUMN] == "valid"].reset_index(drop=True)


def latest_feature_day(s: Settings) -> date:
    """The newest day with features in the lake (the training as-of date)."""
    days = [d for d in lake.list_partitions(s.lake_dir, datasets.FEATURES_TABLE) if d]
    days = [d for d in days if date.fromisoformat(d) <= s.end_date]
    if not days:
        raise FileNotFoundError(
            f"{datasets.FEATURES_TABLE}: no partitions in {s.lake_dir}; materialize features first"
        )
    return date.fromisoformat(days[-1])


def build_training_set(s: Settings, as_of: date | None = None) -> TrainingSet:
    """Matured features + labels for the training and validation windows at ``as_of``."""
    as_of = as_of or latest_feature_day(s)
    windows = datasets.platform_windows(as_of, s.train_days, s.valid_days, s.label_delay_days)
    if windows.train_start < s.start_date:
        raise ValueError(
            f"train_days: a {s.train_days}-day window + {s.label_delay_days}-day delay + "
            f"{s.valid_days}-day validation ending {as_of} starts {windows.train_start}, "
            f"before the first day {s.start_date}"
        )
    train = datasets.load_labeled(s.lake_dir, windows.train_days).assign(**{WINDOW_COLUMN: "train"})
    valid = datasets.load_labeled(s.lake_dir, windows.valid_days).assign(**{WINDOW_COLUMN: "valid"})
    frame = pd.concat([train, valid], ignore_index=True)
    datasets.assert_labels_matured(frame, as_of, s.label_delay_days)
    return TrainingSet(frame, windows, as_of)


def windows_from_frame(frame: pd.DataFrame, label_delay: int) -> datasets.Windows:
    """Recover the windows of a stored training set (the asset hands over a DataFrame)."""

    def span(name: str) -> tuple[date, date]:
        d = frame.loc[frame[WINDOW_COLUMN] == name, TX_DATETIME].dt.normalize()
        if d.empty:
            raise ValueError(f"{WINDOW_COLUMN}: the training set has no {name!r} rows")
        return d.min().date(), d.max().date()

    (ts, te), (vs, ve) = span("train"), span("valid")
    return datasets.Windows(ts, te, vs, ve, label_delay)


def train_and_register(
    s: Settings,
    ts: TrainingSet,
    *,
    model_name: str,
    use_case: str,
    as_of: date | None = None,
):
    """Fit both candidates, log the run with lineage, register the chosen one as challenger
    of ``model_name`` (the registered model of use case ``use_case``).

    Returns ``(ModelInfo, CandidateSet)``.
    """
    from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION
    from ml_platform.training import models, registry

    cands = models.train_candidates(
        ts.train,
        ts.valid,
        list(FEATURE_COLUMNS),
        margin_ap=s.baseline_margin_ap,
        threads=s.train_threads,
    )
    info = registry.log_training_run(
        cands,
        ts.train,
        ts.valid,
        ts.windows,
        model_name=model_name,
        use_case=use_case,
        feature_version=FEATURE_VERSION,
        as_of=(as_of or ts.as_of).isoformat(),
    )
    return info, cands


def gate(s: Settings, ts: TrainingSet, *, model_name: str):
    """Run the promotion gate on the most recent labelled window (the validation days)."""
    from ml_platform.training.gate import run_gate

    w = ts.windows
    return run_gate(ts.valid, f"{w.valid_start}..{w.valid_end}", model_name=model_name)
