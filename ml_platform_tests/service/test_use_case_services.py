"""Flights and a scaffolded third use case, each from its data to a served prediction.

No Dagster: every step is the platform's own function (``use_case_support``), then the real
``bentoml serve``: flights as ``ml_platform.serving.service:FlightsDelay``, the scaffold (a
folder written by ``ml-platform new-use-case`` into a temporary directory, found through
its own ``service.py``) as ``service:<Class> --working-dir <folder>``. Both share one data
directory (one registry, one prediction-log folder), as two services of one platform do.
Over HTTP: the answers carry the use case's fields and equal offline scoring of the batch
engine's features (the weather as-of join included), ``/features`` equals ``build_features``
of the history + that event, the batch key and request order hold, bad requests are 400s
naming the field, ``/model`` and the OpenAPI page describe the use case, and the prediction
log holds the rows in the use case's layout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform_tests.service import support
from ml_platform_tests.service import use_case_support as ucs

pytestmark = pytest.mark.slow

FLIGHT_DAYS = [date(2013, 3, 1) + timedelta(days=i) for i in range(10)]
SCAFFOLD = "clicks"
#: served one by one (/features first, then /predict), then as one shuffled batch
N_SINGLE = 25
N_BATCH = 12


@dataclass
class Served:
    p: ucs.UseCasePlatform
    api: support.Api
    target: str
    singles: pd.DataFrame  # events sent one by one, in event order
    features: list[dict]  # their /features answers (before any was recorded)
    answers: list[dict]  # their /predict answers
    started: float


def _run(p: ucs.UseCasePlatform, api: support.Api, target: str) -> Served:
    """/features for the first events (nothing recorded), then /predict for each in order."""
    singles = p.served.head(N_SINGLE)
    started = time.time()
    features, answers = [], []
    for _, row in singles.iterrows():
        status, body = api.call("POST", "/features", ucs.request_json(p.use_case, row))
        assert status == 200, body
        features.append(body)
    for _, row in singles.iterrows():
        status, body = api.call("POST", "/predict", ucs.request_json(p.use_case, row))
        assert status == 200, body
        answers.append(body)
    return Served(p, api, target, singles, features, answers, started)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("use_case_services") / "data"


@pytest.fixture(scope="module")
def flights(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from ml_platform.use_cases.loader import PACKAGE_ROOT, load_use_case

    uc = load_use_case(PACKAGE_ROOT / "flights")
    # labels are known within 2 days: validation ends 2 days before the served day's eve
    p = ucs.build_use_case_platform(
        uc, FLIGHT_DAYS, data_dir, train_days=3, valid_days=2, label_delay=2
    )
    log_path = tmp_path_factory.mktemp("flights_svc") / "bentoml.log"
    target = uc.service
    with ucs.serve(p, log_path, target=target) as api:
        yield _run(p, api, target)


@pytest.fixture(scope="module")
def scaffold(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``ml-platform new-use-case`` into a temporary folder, its default sample days."""
    from ml_platform.use_cases.loader import load_use_case, resolve_settings
    from ml_platform.use_cases.scaffold import DEFAULT_SAMPLE_DAYS, DEFAULT_START

    parent = tmp_path_factory.mktemp("team_use_cases")
    cli = Path(sys.executable).with_name("ml-platform")
    done = subprocess.run(
        [str(cli), "new-use-case", SCAFFOLD, "--dir", str(parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    folder = parent / SCAFFOLD
    uc = load_use_case(folder)
    s = resolve_settings(uc)
    days = [DEFAULT_START + timedelta(days=i) for i in range(DEFAULT_SAMPLE_DAYS)]
    p = ucs.build_use_case_platform(
        uc,
        days,
        data_dir,
        train_days=s.train_days,
        valid_days=s.valid_days,
        label_delay=int(s.label_delay_days),
    )
    log_path = tmp_path_factory.mktemp("scaffold_svc") / "bentoml.log"
    target = uc.service  # service:Clicks, module of the folder
    with ucs.serve(p, log_path, target=target, working_dir=folder) as api:
        yield _run(p, api, target)


@pytest.fixture(scope="module", params=["flights", "scaffold"])
def served(request: pytest.FixtureRequest) -> Served:
    return request.getfixturevalue(request.param)


def _scores(p: ucs.UseCasePlatform, feats: pd.DataFrame) -> np.ndarray:
    from ml_platform.serving.scoring import native_predict_fn

    x = feats[list(p.feature_set.columns)].to_numpy(np.float64)
    return np.asarray(native_predict_fn(p.model.model)(x), dtype=np.float64)


def test_flights_answers_are_its_own_fields(flights: Served) -> None:
    """A regression's answer: the derived flight id, the predicted delay, the late flag."""
    p = flights.p
    assert p.use_case.service == "ml_platform.serving.service:FlightsDelay"
    first = flights.answers[0]
    assert set(first) == {
        "flight_id",
        "predicted_dep_delay",
        "late",
        "threshold",
        "model_name",
        "model_version",
    }
    assert [a["flight_id"] for a in flights.answers] == flights.singles["flight_id"].tolist()
    assert all(a["threshold"] == 15.0 for a in flights.answers)
    assert all(a["late"] == (a["predicted_dep_delay"] > 15.0) for a in flights.answers)
    assert {a["model_name"] for a in flights.answers} == {"flights_delay"}


def test_scaffold_answers_are_its_own_fields(scaffold: Served) -> None:
    """A binary answer named after the use case: probability and alert at the threshold."""
    first = scaffold.answers[0]
    score, decision = f"{SCAFFOLD}_probability", f"is_{SCAFFOLD}"
    assert set(first) == {
        "event_id",
        score,
        decision,
        "threshold",
        "model_name",
        "model_version",
    }
    assert scaffold.target == f"service:{SCAFFOLD.capitalize()}"
    assert all(0 <= a[score] <= 1 for a in scaffold.answers)
    assert all(a[decision] == (a[score] >= a["threshold"]) for a in scaffold.answers)
    assert {a["model_name"] for a in scaffold.answers} == {f"{SCAFFOLD}_model"}


def test_served_features_equal_the_batch_features_of_the_event(served: Served) -> None:
    """``/features`` of an event = ``build_features`` of the history + that event alone."""
    p, fs = served.p, served.p.feature_set
    values = pd.DataFrame([f["features"] for f in served.features])
    assert [c for c in fs.columns if not values[c].any()] == []  # no vacuous equality
    for i, got in enumerate(served.features):
        event = served.singles.iloc[[i]]
        want = ucs.batch_features(p, event)
        event_id = event[fs.event_id].iloc[0]
        assert got[fs.event_id] == event_id and got["feature_version"] == fs.version
        assert list(got["features"]) == list(fs.columns)
        np.testing.assert_allclose(
            list(got["features"].values()),
            want.loc[event_id, list(fs.columns)].to_numpy(np.float64),
            rtol=1e-9,
            atol=1e-9,
            err_msg=f"{p.use_case.name} event {event_id}",
        )


def test_flights_features_read_the_weather(flights: Served) -> None:
    """The as-of join and the departed flights' delays are really in what is served."""
    values = pd.DataFrame([f["features"] for f in flights.features])
    assert (values["origin_visibility"] > 0).any() and (values["origin_wind_speed"] > 0).any()
    assert values["origin_mean_delay_24hour"].abs().sum() > 0


def test_predictions_equal_offline_scoring(served: Served) -> None:
    """Each answer = the registered model on the batch features of the history + the
    events served so far (the service learns no label from a request)."""
    from ml_platform.serving.schemas import answer_fields

    p, fs = served.p, served.p.feature_set
    score, _ = answer_fields(p.use_case)
    offline = ucs.batch_features(p, served.singles).loc[served.singles[fs.event_id]]
    np.testing.assert_allclose(
        [a[score] for a in served.answers], _scores(p, offline), rtol=1e-9, atol=1e-9
    )
    assert {a["model_version"] for a in served.answers} == {p.version}


def test_predict_batch_answers_in_request_order(served: Served) -> None:
    """The use case's batch key; shuffled events answered in the request's order, each
    scored on its features in event order (as one by one)."""
    from ml_platform.serving.schemas import answer_fields

    p, fs = served.p, served.p.feature_set
    batch = p.served.iloc[N_SINGLE : N_SINGLE + N_BATCH]
    order = np.random.default_rng(0).permutation(len(batch))
    shuffled = batch.iloc[order]
    key = p.use_case.spec.api.batch_key
    assert key == {"flights": "flights", SCAFFOLD: "events"}[p.use_case.name]
    rows = [ucs.request_json(p.use_case, r) for _, r in shuffled.iterrows()]
    status, body = served.api.call("POST", "/predict_batch", {key: rows})
    assert status == 200, body
    assert [b[fs.event_id] for b in body] == shuffled[fs.event_id].tolist()
    both = pd.concat([served.singles, batch], ignore_index=True)
    offline = ucs.batch_features(p, both).loc[shuffled[fs.event_id]]
    score, _ = answer_fields(p.use_case)
    np.testing.assert_allclose([b[score] for b in body], _scores(p, offline), rtol=1e-9, atol=1e-9)


def _bad_requests(p: ucs.UseCasePlatform) -> list[tuple[str, dict, list]]:
    """(what, body, loc): wrong types and a missing join field of this use case."""
    uc, fs = p.use_case, p.feature_set
    good = ucs.request_json(uc, p.served.iloc[-1])
    value = next(iter(uc.spec.event_schema.values))
    join = next(iter(fs.entity_columns))  # an entity key: the windows join on it
    for f in uc.features:
        if getattr(f, "join", None):
            join = next(iter(f.join))  # the as-of join's own field, if any
            break
    key = next(c for c, kind in fs.entities if kind == "string")
    return [
        ("wrong type", {**good, value: "many"}, [value]),
        ("number for a string key", {**good, key: 7}, [key]),
        ("missing join field", {k: v for k, v in good.items() if k != join}, [join]),
    ]


def test_bad_request_is_a_400_naming_the_field(served: Served) -> None:
    p = served.p
    key = p.use_case.spec.api.batch_key
    for what, body, loc in _bad_requests(p):
        status, answer = served.api.call("POST", "/predict", body)
        assert status == 400, (what, status, answer)
        assert [d["loc"] for d in answer["detail"]] == [loc], (what, answer)
        status, answer = served.api.call("POST", "/predict_batch", {key: [body]})
        assert status == 400, (what, status, answer)
        assert [d["loc"] for d in answer["detail"]] == [[key, 0, *loc]], (what, answer)


def test_model_and_openapi_describe_the_use_case(served: Served) -> None:
    from ml_platform.serving.schemas import request_model

    p, uc = served.p, served.p.use_case
    status, info = served.api.call("GET", "/model")
    assert status == 200 and info["model_name"] == uc.model_name
    assert info["champion"]["version"] == p.version
    assert info["feature_columns"] == list(p.feature_set.columns)
    assert info["online_store"]["watermark"] is not None
    status, docs = served.api.call("GET", "/docs.json")
    assert status == 200
    name = request_model(uc, uc.spec.api.request_name).__name__
    schema = docs["components"]["schemas"][name]
    assert list(schema["properties"]) == list(uc.spec.event_schema.request)
    assert uc.spec.label.column not in schema["properties"]


def test_prediction_log_holds_the_rows(served: Served) -> None:
    """The use case's own log file and layout: request fields, its decision column and
    the features served, one champion row per /predict."""
    from ml_platform.serving.prediction_log import (
        log_layout,
        prediction_log_path,
        read_prediction_log,
    )
    from ml_platform.serving.schemas import answer_fields

    p, uc, fs = served.p, served.p.use_case, served.p.feature_set
    with support.platform_env(p.data_dir):
        path = prediction_log_path(use_case=uc)
    layout = log_layout(uc)
    since = datetime.fromtimestamp(served.started, UTC)
    deadline = time.monotonic() + 15
    while True:
        log = read_prediction_log(path, since=since, role="champion", layout=layout)
        log = log[log["endpoint"] == "/predict"]
        if len(log) >= len(served.answers) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(log) == len(served.answers)
    _, decision = answer_fields(uc)
    by_id = log.set_index(fs.event_id).loc[served.singles[fs.event_id]]
    assert by_id[decision].tolist() == [a[decision] for a in served.answers]
    for column in uc.spec.event_schema.request:
        assert column in by_id.columns or column == fs.event_id, column
    offline = ucs.batch_features(p, served.singles).loc[served.singles[fs.event_id]]
    np.testing.assert_allclose(
        by_id[list(fs.columns)].to_numpy(np.float64),
        offline[list(fs.columns)].to_numpy(np.float64),
        rtol=1e-9,
        atol=1e-9,
    )
