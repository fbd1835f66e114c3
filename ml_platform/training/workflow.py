"""The training steps the Dagster assets call: build the set, train + register, gate.

Plain Python (no Dagster): each function takes settings and data, returns plain results.
A :class:`Plan` says which use case, lake tables, dates and windows; without one, the
flagship's (the platform settings and its lake tables) is meant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pandas as pd

from ml_platform.data import lake
from ml_platform.settings import Settings
from ml_platform.training import datasets

if TYPE_CHECKING:
    from distributed import Client

    from ml_platform.use_cases.loader import UseCase

WINDOW_COLUMN = "window"  # "train" / "valid" in the stored training set


@dataclass(frozen=True)
class Plan:
    """What one use case trains on: its lake tables, date range and window lengths.

    ``label_delay_days``: days until every label of a day is known (a fixed delay, or a
    per-row label's ``known_within`` in whole days); the windows keep that gap."""

    start_date: date
    end_date: date
    train_days: int
    valid_days: int
    label_delay_days: int
    features_table: str = datasets.FEATURES_TABLE
    events_table: str = datasets.TRANSACTIONS_TABLE
    use_case: UseCase | None = None

    @classmethod
    def flagship(cls, s: Settings) -> Plan:
        """The flagship's plan: the platform settings and its lake tables."""
        return cls(s.start_date, s.end_date, s.train_days, s.valid_days, s.label_delay_days)

    @property
    def event_time(self) -> str:
        return datasets.Roles.of(self.use_case).event_time


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


def latest_feature_day(s: Settings, plan: Plan | None = None) -> date:
    """The newest day with features in the lake (the training as-of date)."""
    p = plan or Plan.flagship(s)
    days = [d for d in lake.list_partitions(s.lake_dir, p.features_table) if d]
    days = [d for d in days if date.fromisoformat(d) <= p.end_date]
    if not days:
        raise FileNotFoundError(
            f"{p.features_table}: no partitions in {s.lake_dir}; materialize features first"
        )
    return date.fromisoformat(days[-1])


def build_training_set(
    s: Settings, as_of: date | None = None, plan: Plan | None = None
) -> TrainingSet:
    """Matured features + labels for the training and validation windows at ``as_of``."""
    p = plan or Plan.flagship(s)
    as_of = as_of or latest_feature_day(s, p)
    delay = p.label_delay_days
    windows = datasets.platform_windows(as_of, p.train_days, p.valid_days, delay)
    if windows.train_start < p.start_date:
        raise ValueError(
            f"train_days: a {p.train_days}-day window + {delay}-day delay + "
            f"{p.valid_days}-day validation ending {as_of} starts {windows.train_start}, "
            f"before the first day {p.start_date}"
        )
    tables = {"use_case": p.use_case, "features_table": p.features_table}
    tables["events_table"] = p.events_table
    train = datasets.load_labeled(s.lake_dir, windows.train_days, **tables)
    valid = datasets.load_labeled(s.lake_dir, windows.valid_days, **tables)
    frame = pd.concat(
        [train.assign(**{WINDOW_COLUMN: "train"}), valid.assign(**{WINDOW_COLUMN: "valid"})],
        ignore_index=True,
    )
    datasets.assert_labels_matured(frame, as_of, delay, use_case=p.use_case)
    return TrainingSet(frame, windows, as_of)


def windows_from_frame(
    frame: pd.DataFrame, label_delay: int, *, use_case: UseCase | None = None
) -> datasets.Windows:
    """Recover the windows of a stored training set (the asset hands over a DataFrame)."""
    time = datasets.Roles.of(use_case).event_time

    def span(name: str) -> tuple[date, date]:
        d = frame.loc[frame[WINDOW_COLUMN] == name, time].dt.normalize()
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
    use_case: str | UseCase,
    as_of: date | None = None,
    margin: float | None = None,
    features_table: str = datasets.FEATURES_TABLE,
    client: Client | None = None,
):
    """Fit the use case's candidates, log the run with lineage, register the chosen one as
    challenger of ``model_name`` (the registered model of use case ``use_case``).

    ``client``: the run's Dask client (None: local); a training set of at least
    ``dask_train_min_rows`` rows is then fitted on the cluster.

    ``margin``: by how much LightGBM must beat the baseline on the primary metric (default:
    the platform's ``baseline_margin_ap``). Returns ``(ModelInfo, CandidateSet)``.
    """
    from ml_platform.features.definitions import feature_set
    from ml_platform.features.online import resolve_use_case
    from ml_platform.training import models, registry

    uc = resolve_use_case(use_case)
    fs = feature_set(uc)
    cands = models.train_candidates(
        ts.train,
        ts.valid,
        list(fs.columns),
        margin_ap=s.baseline_margin_ap if margin is None else margin,
        threads=s.train_threads,
        use_case=uc,
        client=client,
        dask_min_rows=s.dask_train_min_rows,
    )
    info = registry.log_training_run(
        cands,
        ts.train,
        ts.valid,
        ts.windows,
        model_name=model_name,
        use_case=uc,
        feature_version=fs.version,
        as_of=(as_of or ts.as_of).isoformat(),
        features_table=features_table,
    )
    return info, cands


def gate(s: Settings, ts: TrainingSet, *, model_name: str):
    """Run the promotion gate on the most recent labelled window (the validation days)."""
    from ml_platform.training.gate import run_gate

    w = ts.windows
    return run_gate(ts.valid, f"{w.valid_start}..{w.valid_end}", model_name=model_name)
