"""A small real platform of any use case, from its data to a served prediction, without Dagster.

The steps are the platform's own functions, in the order the pipeline runs them: each day
read from the declared source and validated (side tables too), batch features of the
history, candidates trained by the use case's task, the chosen one registered with its
lineage and promoted under the use case's model name, the use case's online store loaded
as of the served day; then the real ``bentoml serve`` of the use case's service.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ml_platform_tests.service import support


@dataclass
class UseCasePlatform:
    """What a test needs to compare the served answers with the batch engine's."""

    use_case: object  # ml_platform.use_cases.UseCase
    data_dir: Path
    history: pd.DataFrame  # validated events of the days before the served day
    served: pd.DataFrame  # validated events of the served day, in event order
    side_history: dict[str, pd.DataFrame]  # side tables up to the served day
    side_all: dict[str, pd.DataFrame]  # side tables, the served day included
    label_delay: int
    version: str
    threshold: float
    model: object  # the registered candidate (training.models.TrainedModel)
    env: dict[str, str] = field(default_factory=dict)  # extra variables of the service

    @property
    def feature_set(self):  # noqa: ANN201 - FeatureSet
        from ml_platform.features.definitions import feature_set

        return feature_set(self.use_case)


def validated_days(uc: object, days: list[date], settings: object) -> tuple[pd.DataFrame, dict]:
    """Each day from the declared source, validated; side tables by their own rules."""
    from ml_platform.data.sources import read_events_day, read_side_day
    from ml_platform.data.validation import validate_events, validate_side_rows

    events = [validate_events(read_events_day(uc, d, settings), d, uc)[0] for d in days]
    side = {
        table: pd.concat(
            [
                validate_side_rows(read_side_day(uc, table, d, settings), d, table, uc)[0]
                for d in days
            ],
            ignore_index=True,
        )
        for table in uc.spec.event_schema.side_tables
    }
    return pd.concat(events, ignore_index=True), side


def _before(frame: pd.DataFrame, column: str, day: date) -> pd.DataFrame:
    return frame[frame[column] < pd.Timestamp(day)].reset_index(drop=True)


def build_use_case_platform(
    uc: object,
    days: list[date],
    data_dir: Path,
    *,
    train_days: int,
    valid_days: int,
    label_delay: int,
) -> UseCasePlatform:
    """Validate ``days``, train on all but the last, register + promote, load the store.

    ``label_delay`` (days) separates training from validation and validation from the
    served (last) day, so every label the model learns from is known when it is served.
    """
    from ml_platform.features.batch import build_features
    from ml_platform.features.definitions import feature_set
    from ml_platform.settings import get_settings
    from ml_platform.training import datasets, models, registry
    from ml_platform.use_cases.loader import (
        engine_label_delay,
        registered_model_name,
        resolve_settings,
    )

    fs = feature_set(uc)
    day = days[-1]
    with support.platform_env(data_dir):
        s = get_settings()
        events, side = validated_days(uc, days, resolve_settings(uc))
        delay = engine_label_delay(uc, s.label_delay_days)
        history = _before(events, fs.event_time, day)
        side_history = {
            t: _before(rows, uc.spec.event_schema.side_tables[t].time, day)
            for t, rows in side.items()
        }
        feats = build_features(history, delay, use_case=uc, side_tables=side_history)
        labeled = datasets.join_labels(feats, history, use_case=uc)
        as_of = day - timedelta(days=1)
        valid_end = as_of - timedelta(days=label_delay)
        valid_start = valid_end - timedelta(days=valid_days - 1)
        train_end = valid_start - timedelta(days=label_delay + 1)
        windows = datasets.Windows(
            train_end - timedelta(days=train_days - 1),
            train_end,
            valid_start,
            valid_end,
            label_delay,
        )
        train, valid = datasets.split(labeled, windows, use_case=uc)
        cands = models.train_candidates(train, valid, list(fs.columns), threads=1, use_case=uc)
        model_name = registered_model_name(uc, s.model_name)
        info = registry.log_training_run(
            cands,
            train,
            valid,
            windows,
            model_name=model_name,
            use_case=uc,
            feature_version=fs.version,
        )
        registry.promote(info.version, model_name=model_name, who="tests", why="served e2e")
        load_online_store(uc, s, delay, history, day, side_history, side)
    served = events[events[fs.event_time].dt.date == day]
    served = served.sort_values([fs.event_time, fs.event_id], ignore_index=True)
    return UseCasePlatform(
        uc,
        data_dir,
        history,
        served,
        side_history,
        side,
        delay,
        info.version,
        float(cands.threshold),
        cands.chosen,
    )


def load_online_store(
    uc: object,
    settings: object,
    delay: int,
    history: pd.DataFrame,
    day: date,
    side_history: dict[str, pd.DataFrame],
    side_all: dict[str, pd.DataFrame],
) -> None:
    """The store as the daily pipeline leaves it before ``day``: the history loaded as of
    its end, every history label with its own time (a label known during ``day`` counts
    from then), and the side rows of ``day`` put live as they would arrive."""
    from ml_platform.features.stores.base import open_store

    as_of = pd.Timestamp(day) - pd.Timedelta(1, "ns")
    with open_store(settings, delay, use_case=uc) as store:
        store.load(history, as_of, side_tables=side_history)
        store.set_labels(history)
        for table, rows in side_all.items():
            store.put_side_rows(table, rows)


def request_json(uc: object, row: pd.Series | dict) -> dict:
    """The request fields of an event as a client sends them (JSON types, ISO times)."""
    out = {}
    for column in uc.spec.event_schema.request:
        value = row[column]
        typ = uc.columns[column]
        if typ == "datetime":
            out[column] = pd.Timestamp(value).isoformat()
        elif typ == "int":
            out[column] = int(value)
        elif typ == "float":
            out[column] = float(value)
        else:
            out[column] = str(value)
    return out


def masked_labels(p: UseCasePlatform, served: pd.DataFrame) -> pd.DataFrame:
    """Served events as the batch engine must see them to match a service that learns no
    label from requests: their labels unknown until after the last one."""
    fs = p.feature_set
    out = served.copy()
    if fs.known_at:
        out[fs.known_at] = out[fs.event_time].max() + pd.Timedelta(days=400)
    return out


def batch_features(p: UseCasePlatform, served: pd.DataFrame) -> pd.DataFrame:
    """``build_features`` of the history + ``served`` (labels masked), the served rows only,
    indexed by event id."""
    from ml_platform.features.batch import build_features

    fs = p.feature_set
    events = pd.concat([p.history, masked_labels(p, served)], ignore_index=True)
    rows = np.zeros(len(events), dtype=bool)
    rows[len(p.history) :] = True
    feats = build_features(
        events, p.label_delay, rows=rows, use_case=p.use_case, side_tables=p.side_all
    )
    return feats.set_index(fs.event_id)


@contextlib.contextmanager
def serve(
    p: UseCasePlatform, log_path: Path, *, target: str, working_dir: Path | None = None
) -> Iterator[support.Api]:
    """The real ``bentoml serve`` of the use case's service on a free port."""
    port = support.free_port()
    env = support.service_env(p.data_dir, port) | p.env
    name = p.use_case.model_name
    ready = re.compile(rf"\[entry_service:{re.escape(name)}:(\d+)\] Service {name} initialized")
    with support.bentoml_serve(
        env, log_path, service=target, working_dir=working_dir, worker_ready=ready
    ):
        yield support.Api(port, log_path)
