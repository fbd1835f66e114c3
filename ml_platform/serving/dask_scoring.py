"""Batch scoring on a Dask cluster: each day's partition read, scored and written by a worker.

The champion is sent to the workers once (its native model; each worker rebuilds the
predictor), and every task runs :func:`scoring.score_by_day` on one day of the feature
table, so the predictions are exactly those of the local path. The features never pass
through the driver: a task returns the day's predictions (a few narrow columns), or with
``write_table`` writes them to the lake itself and returns only its counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ml_platform.data import lake
from ml_platform.features.definitions import DEFAULT_USE_CASE
from ml_platform.serving import scoring

if TYPE_CHECKING:
    from distributed import Client

    from ml_platform.use_cases.loader import UseCase

#: Predictors rebuilt on this worker process, by (model name, version).
_PREDICTORS: dict[tuple[str, str], scoring.ScoringModel] = {}


def _shippable(model: scoring.ScoringModel) -> scoring.ScoringModel:
    """The model without its predictor function (which may hold native handles)."""
    return dataclasses.replace(model, predict_proba=None)


def _on_worker(model: scoring.ScoringModel) -> scoring.ScoringModel:
    key = (model.name, model.version)
    found = _PREDICTORS.get(key)
    if found is None or found.native is not model.native:
        found = dataclasses.replace(model, predict_proba=scoring.native_predict_fn(model.native))
        _PREDICTORS[key] = found
    return found


def _score_day(
    model: scoring.ScoringModel,
    lake_dir: Path,
    features_table: str,
    day: str,
    use_case: UseCase | str,
    write_table: str | None,
    decision: str,
) -> pd.DataFrame | dict[str, Any]:
    feats = lake.read_partitions(lake_dir, features_table, [day], missing_ok=True)
    if feats.empty:
        raise FileNotFoundError(f"{features_table}: partition {day} is missing or empty")
    preds = scoring.score_by_day(feats, _on_worker(model), [day], use_case=use_case)[day]
    if write_table is None:
        return preds
    lake.write_partition(preds, lake_dir, write_table, day)
    return {"day": day, "rows": len(preds), "flagged": int(preds[decision].sum())}


def score_days(
    client: Client,
    model: scoring.ScoringModel,
    lake_dir: Path,
    features_table: str,
    days: Iterable[date | str],
    *,
    use_case: UseCase | str = DEFAULT_USE_CASE,
    write_table: str | None = None,
) -> dict[str, pd.DataFrame] | dict[str, dict[str, Any]]:
    """``{day: predictions}`` of ``model`` for each day of ``features_table``, one task per
    day on the workers (what :func:`scoring.score_by_day` gives for those days).

    With ``write_table``, each worker writes its day as that lake table's partition and
    the result is ``{day: {"day", "rows", "flagged"}}``.
    """
    keys = sorted({d if isinstance(d, str) else d.isoformat() for d in days})
    if not isinstance(use_case, str):  # the workers load it by name
        use_case = use_case.name
    shipped = client.scatter(_shippable(model), broadcast=True, hash=False)
    decision = scoring.decision_column(use_case)
    futures = client.map(
        _score_day,
        [shipped] * len(keys),
        [lake_dir] * len(keys),
        [features_table] * len(keys),
        keys,
        use_case=use_case,
        write_table=write_table,
        decision=decision,
        pure=False,
    )
    return dict(zip(keys, client.gather(futures), strict=True))
