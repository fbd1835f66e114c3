"""The API against its online store: watermark in ``/model``, the empty/stale warning,
``/features`` (not recorded) and the refusal of transactions from the future.

The real ``bentoml serve`` runs on its own data directory (the serving platform's
validated lake copied in, its registry by URI), so its online store is this module's
alone. A far-future ``/predict`` used to be recorded and prune the card's and the
terminal's history; now it is a 400 and the next honest request sees all of it.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID
from ml_platform_tests.service import support
from ml_platform_tests.service.test_service import Api

pytestmark = pytest.mark.slow

DAY = support.END  # the newest lake day
FUTURE = "2031-06-29T12:11:24"
COUNT_1D = "customer_id_nb_tx_1day_window"
COUNT_30D = "customer_id_nb_tx_30day_window"


class Service:
    def __init__(self, api: Api, log_path: Path, data_dir: Path, p: support.Platform) -> None:
        self.api, self.log_path, self.data_dir, self.p = api, log_path, data_dir, p

    def log(self) -> str:
        return self.log_path.read_text()

    def online_store(self) -> dict:
        status, body = self.api.call("GET", "/model")
        assert status == 200, body
        return body["online_store"]


@pytest.fixture(scope="module")
def service(session_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    p, _, _ = support.registered_platform(session_dir / "serving_platform")
    base = tmp_path_factory.mktemp("serving_correctness")
    data_dir = base / "data"
    table = Path("lake") / "validated_transactions"
    shutil.copytree(p.data_dir / table, data_dir / table)
    env = support.service_env(data_dir, support.free_port())
    env["ML_PLATFORM_MLFLOW_TRACKING_URI"] = f"sqlite:///{p.data_dir / 'mlflow.db'}"
    env["ML_PLATFORM_LABEL_DELAY_DAYS"] = str(support.LABEL_DELAY)
    log_path = base / "bentoml.log"
    with support.running_service(env, log_path) as port:
        yield Service(Api(port), log_path, data_dir, p)


def _first_of_day(p: support.Platform) -> pd.Series:
    """DAY's first transaction: the store loaded just before it holds all its history."""
    tx = p.transactions[p.transactions["tx_datetime"].dt.date == DAY]
    return tx.sort_values(["tx_datetime", "transaction_id"]).iloc[0]


def _body(row: pd.Series, **changes: object) -> dict:
    body = {
        "transaction_id": int(row["transaction_id"]),
        "tx_datetime": row["tx_datetime"].isoformat(),
        "customer_id": int(row[CUSTOMER_ID]),
        "terminal_id": int(row[TERMINAL_ID]),
        "tx_amount": float(row["tx_amount"]),
    }
    return {**body, **changes}


def test_empty_store_warns_and_service_stays_ready(service: Service) -> None:
    assert service.api.call("GET", "/readyz")[0] == 200
    info = service.online_store()
    assert info["kind"] == "sqlite" and info["watermark"] is None and info["error"] is None
    assert info["entities"] == {CUSTOMER_ID: 0, TERMINAL_ID: 0}
    warning = [line for line in service.log().splitlines() if "online store (sqlite)" in line]
    assert any("WARNING" in w and "is empty" in w and DAY.isoformat() in w for w in warning), (
        service.log()[-3000:]
    )


@pytest.fixture(scope="module")
def loaded(service: Service) -> pd.Series:
    """The store loaded as of just before DAY's first transaction (``r``), then /reload."""
    from ml_platform.features.stores.base import sqlite_path
    from ml_platform.features.stores.sqlite import SQLiteStore

    r = _first_of_day(service.p)
    tx = service.p.transactions
    with support.platform_env(service.data_dir):
        from ml_platform.settings import get_settings

        path = sqlite_path(get_settings())
    with SQLiteStore(path, label_delay_days=support.LABEL_DELAY) as store:
        t = r["tx_datetime"]
        store.load(tx[tx["tx_datetime"] < t], t - pd.Timedelta(1, "ns"))
        counts = store.entity_counts()
    status, body = service.api.call("POST", "/reload")
    assert status == 200, body
    assert body["online_store"]["entities"] == counts
    return r


def test_model_reports_watermark_and_stale_store_warns(service: Service, loaded) -> None:
    tx = service.p.transactions
    newest = tx.loc[tx["tx_datetime"] < loaded["tx_datetime"], "tx_datetime"].max()
    info = service.online_store()
    assert info["watermark"] == newest.isoformat()
    counted = datetime.fromisoformat(info["entities_counted_at"])
    assert timedelta(0) <= datetime.now(UTC) - counted < timedelta(minutes=10)
    assert info["entities"][CUSTOMER_ID] > 0 and info["entities"][TERMINAL_ID] > 0
    # DAY's first transaction is in the lake, not in the store: older than the lake
    expected = (
        f"watermark {newest.isoformat()} is older than the newest validated_transactions day {DAY}"
    )
    assert any("WARNING" in line and expected in line for line in service.log().splitlines()), (
        service.log()[-3000:]
    )
    assert service.api.call("GET", "/readyz")[0] == 200


def _assert_future_refused(status: int, body: dict, loc: list) -> None:
    assert status == 400, body
    (detail,) = body["detail"]
    assert detail["loc"] == loc
    assert "after the service clock" in detail["msg"]
    assert "ML_PLATFORM_SERVING_MAX_FUTURE_SECONDS = 300 s" in detail["msg"]


def test_future_transaction_refused_and_history_kept(service: Service, loaded) -> None:
    api, r = service.api, loaded
    before = service.online_store()["watermark"]
    future = _body(r, tx_datetime=FUTURE)
    status, body = api.call("POST", "/predict", future)
    _assert_future_refused(status, body, ["tx_datetime"])
    status, body = api.call("POST", "/predict_batch", {"transactions": [_body(r), future]})
    _assert_future_refused(status, body, ["transactions", 1, "tx_datetime"])
    status, body = api.call("POST", "/features", future)
    _assert_future_refused(status, body, ["tx_datetime"])
    assert service.online_store()["watermark"] == before  # nothing was recorded

    # the honest request sees the card's and the terminal's full history: batch features
    from ml_platform.features import FEATURE_COLUMNS

    status, got = api.call("POST", "/features", _body(r))
    assert status == 200, got
    assert list(got["features"]) == FEATURE_COLUMNS
    expected = service.p.features.set_index("transaction_id").loc[int(r["transaction_id"])]
    np.testing.assert_allclose(
        [got["features"][c] for c in FEATURE_COLUMNS],
        expected[FEATURE_COLUMNS].to_numpy(np.float64),
        rtol=0,
        atol=1e-9,
    )
    assert got["features"][COUNT_30D] > 1
    status, answer = api.call("POST", "/predict", _body(r))
    assert status == 200, answer


def test_features_are_not_recorded_predict_is(service: Service, loaded) -> None:
    api, r = service.api, loaded
    # two new transactions of r's card: `later` counts `first` only once it is recorded
    t = r["tx_datetime"]
    first = _body(
        r,
        transaction_id=int(r["transaction_id"]) + 10**9,
        tx_datetime=(t + pd.Timedelta(microseconds=500)).isoformat(),
    )
    later = _body(
        r,
        transaction_id=int(r["transaction_id"]) + 2 * 10**9,
        tx_datetime=(t + pd.Timedelta(seconds=1)).isoformat(),
    )
    status, a = api.call("POST", "/features", first)
    assert status == 200, a
    status, b = api.call("POST", "/features", later)
    assert status == 200, b
    assert b["features"][COUNT_1D] == a["features"][COUNT_1D]  # `first` was not recorded
    watermark = service.online_store()["watermark"]
    status, _ = api.call("POST", "/predict", first)
    assert status == 200
    status, c = api.call("POST", "/features", later)
    assert status == 200, c
    assert c["features"][COUNT_1D] == a["features"][COUNT_1D] + 1
    assert watermark < first["tx_datetime"]
    assert service.online_store()["watermark"] == pd.Timestamp(first["tx_datetime"]).isoformat()


def test_tolerance_follows_the_service_clock(service: Service, loaded) -> None:
    """Up to ML_PLATFORM_SERVING_MAX_FUTURE_SECONDS (300) ahead of the clock is accepted."""
    now = datetime.now(UTC).replace(tzinfo=None)
    soon = _body(loaded, tx_datetime=(now + timedelta(seconds=60)).isoformat())
    status, body = service.api.call("POST", "/features", soon)  # /features records nothing
    assert status == 200, body
    late = _body(loaded, tx_datetime=(now + timedelta(seconds=900)).isoformat())
    status, body = service.api.call("POST", "/features", late)
    _assert_future_refused(status, body, ["tx_datetime"])
    # an aware timestamp is compared in UTC (its wall clock here is 5 hours behind)
    west = timezone(timedelta(hours=-5))
    aware = (datetime.now(UTC) + timedelta(seconds=900)).astimezone(west).isoformat()
    status, body = service.api.call("POST", "/features", _body(loaded, tx_datetime=aware))
    _assert_future_refused(status, body, ["tx_datetime"])
