"""``make demo`` itself: the real ``ml-platform demo`` on a tiny isolated platform, then the
real API on what it left behind, asked exactly what the demo tells a new user to ask.

Tiny: 200 customers, 400 terminals, one week, a one-day label delay (3 training days, the
gap, 2 validation days), fresh data dir and DAGSTER_HOME. Every stage must announce its
start and its end, leave its tables, register a champion and load the online store, and
the demo's own example request to ``/features`` must get the batch engine's features (the
store holds the card's history: no training/serving skew in the recommended first flow).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from ml_platform.data.contract import CUSTOMER_ID, TERMINAL_ID
from ml_platform.training.datasets import TRANSACTIONS_TABLE as TRANSACTIONS
from ml_platform_tests.service import support
from ml_platform_tests.service.test_service import Api
from ml_platform_tests.ui.dagster_ui import PROJECT_DIR, ui_env

pytestmark = pytest.mark.slow

START, END, LABEL_DELAY = date(2025, 4, 1), date(2025, 4, 7), 1
END_FLIGHTS = "2013-01-07"
#: Flights on its first week (training 2 days, a 2-day label gap, validation 1 day), like
#: the flights pipeline test: ``make demo`` runs every shipped use case.
FLIGHTS_WEEK = {
    "FLIGHTS_END_DATE": "2013-01-07",
    "FLIGHTS_TRAIN_DAYS": "2",
    "FLIGHTS_VALID_DAYS": "1",
}
TINY = {
    "ML_PLATFORM_SIM_N_CUSTOMERS": "200",
    "ML_PLATFORM_SIM_N_TERMINALS": "400",
    **FLIGHTS_WEEK,
}
FLIGHTS_STAGES = (
    "flights_spine_job",
    "flights_training_features_job",
    "flights_training_job",
    "flights_batch_scoring_job",
)
STAGES = (
    "fraud_spine_job",
    "fraud_training_features_job",
    "fraud_training_job",
    "fraud_batch_scoring_job",
    "monitoring",
)
DAILY_TABLES = (
    "raw_transactions",
    TRANSACTIONS,
    "transaction_features",
    "batch_predictions",
)
COUNT_30D = "customer_id_nb_tx_30day_window"


class Demo:
    def __init__(self, env: dict[str, str], out: str, seconds: float) -> None:
        self.env, self.out, self.seconds = env, out, seconds
        self.data_dir = Path(env["ML_PLATFORM_DATA_DIR"])
        self.lines = out.splitlines()

    def line(self, pattern: str, after: str | None = None) -> re.Match:
        """The first printed line matching ``pattern`` (a regex), after the first line
        matching ``after`` if given."""
        start = 0
        if after is not None:
            start = next(i for i, x in enumerate(self.lines) if re.search(after, x))
        for text in self.lines[start:]:
            m = re.search(pattern, text)
            if m:
                return m
        raise AssertionError(f"no line matches {pattern!r} in:\n{self.out}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    base = tmp_path_factory.mktemp("demo")
    env = ui_env(base, **TINY, ML_PLATFORM_SERVING_PORT=str(support.free_port()))
    assert env["ML_PLATFORM_START_DATE"] == START.isoformat()
    assert env["ML_PLATFORM_END_DATE"] == END.isoformat()
    assert env["ML_PLATFORM_LABEL_DELAY_DAYS"] == str(LABEL_DELAY)
    t0 = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ml-platform")), "demo"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-5000:]
    return Demo(env, done.stdout, time.monotonic() - t0)


def test_every_stage_announces_its_start_then_its_end(demo: Demo) -> None:
    def first(prefix: str) -> int:
        hits = [i for i, x in enumerate(demo.lines) if x.startswith(f"  {prefix}")]
        assert hits, f"no line starts with {prefix!r}:\n{demo.out}"
        return hits[0]

    starts = [first(f"{stage}: started (") for stage in STAGES]
    assert starts == sorted(starts), demo.out  # in pipeline order
    for stage, started in zip(STAGES, starts, strict=True):
        end = "fraud_labeled_performance_job: " if stage == "monitoring" else f"{stage}: done in "
        assert started < first(end), (stage, demo.out)
    assert demo.lines[-1].startswith("demo finished in ")


def test_every_stage_left_its_output(demo: Demo) -> None:
    from ml_platform.data import lake
    from ml_platform.training import registry

    days = [(START + timedelta(days=i)).isoformat() for i in range((END - START).days + 1)]
    lake_dir = demo.data_dir / "lake"
    for table in DAILY_TABLES:
        assert lake.list_partitions(lake_dir, table) == days, table
    assert (demo.data_dir / "warehouse.duckdb").stat().st_size > 0
    assert lake.list_partitions(lake_dir, "drift_report")[-1] == END.isoformat()
    assert (demo.data_dir / "reports" / "monitoring_summary.png").stat().st_size > 0
    with support.platform_env(demo.data_dir):
        champion = registry.current_version("champion", model_name=support.MODEL)
    assert champion is not None
    assert demo.line(r"^champion fraud_detector v(\d+) ").group(1) == champion


def test_online_store_loaded_as_of_the_range_end(demo: Demo) -> None:
    from ml_platform.data import lake
    from ml_platform.features.stores import open_store

    tx = lake.read_partitions(demo.data_dir / "lake", TRANSACTIONS, [END])
    with support.platform_env(demo.data_dir, label_delay_days=LABEL_DELAY), open_store() as store:
        info = store.describe()
    assert info["watermark"] == tx["tx_datetime"].max().isoformat()
    m = demo.line(r"online store \(sqlite\): watermark (\S+), ([\d,]+) customers, ([\d,]+) termin")
    assert m.group(1) == info["watermark"]
    assert int(m.group(2).replace(",", "")) == info["entities"][CUSTOMER_ID] > 0
    assert int(m.group(3).replace(",", "")) == info["entities"][TERMINAL_ID] > 0


def test_demo_example_gets_the_batch_features_from_the_api(demo: Demo, tmp_path: Path) -> None:
    """``bentoml serve`` on the demo's data: its printed /features request equals batch."""
    from ml_platform.data import lake
    from ml_platform.features import FEATURE_COLUMNS, build_features

    m = demo.line(r"curl -s -X POST (http://\S+/features) .* -d '(\{.*\})'")
    url, body = urlsplit(m.group(1)), json.loads(m.group(2))
    lake_dir = demo.data_dir / "lake"
    tx = lake.read_partitions(lake_dir, TRANSACTIONS, lake.list_partitions(lake_dir, TRANSACTIONS))
    batch = build_features(tx, label_delay_days=LABEL_DELAY).set_index("transaction_id")
    expected = batch.loc[body["transaction_id"], FEATURE_COLUMNS].to_numpy(np.float64)

    log_path = tmp_path / "bentoml.log"
    with support.running_service(demo.env, log_path) as port:
        assert port == url.port
        api = Api(port)
        status, got = api.call("POST", url.path, body)
        assert status == 200, got
        status, info = api.call("GET", "/model")
        assert status == 200, info
        status, answer = api.call("POST", "/predict", body)
        assert status == 200, answer
    np.testing.assert_allclose(
        [got["features"][c] for c in FEATURE_COLUMNS], expected, rtol=0, atol=1e-9
    )
    assert got["features"][COUNT_30D] > 1
    assert info["online_store"]["watermark"] == demo.line(r"watermark (\S+),").group(1)
    assert answer["model_version"] == info["champion"]["version"]
    served = log_path.read_text()
    assert "online store (sqlite) is empty" not in served
    assert "is older than the newest" not in served


FLIGHTS_HEADER = r"^ml_platform demo, use case flights: 2013-01-01\.\.2013-01-07 \(7 days"


def test_flights_runs_after_fraud_through_its_own_stages(demo: Demo) -> None:
    """Every shipped use case, fraud first: flights' stages announce their start and end
    after fraud's, each leaves its tables, and its champion is registered."""
    from ml_platform.data import lake
    from ml_platform.training import registry

    header = next(i for i, x in enumerate(demo.lines) if re.search(FLIGHTS_HEADER, x))
    fraud_done = max(i for i, x in enumerate(demo.lines) if x.startswith("  fraud_"))
    assert fraud_done < header
    after = demo.lines[header:]
    for stage in FLIGHTS_STAGES:
        started = after.index(next(x for x in after if x.startswith(f"  {stage}: started (")))
        done = after.index(next(x for x in after if x.startswith(f"  {stage}: done in ")))
        assert started < done, stage
    days = [f"2013-01-0{d}" for d in range(1, 8)]
    for table in (
        "flights_validated_events",
        "flights_event_features",
        "flights_batch_predictions",
    ):
        assert lake.list_partitions(demo.data_dir / "lake", table) == days, table
    with support.platform_env(demo.data_dir):
        champion = registry.current_version("champion", model_name="flights_delay")
    m = demo.line(r"^champion flights_delay v(\d+) \(\w+\).*: MAE [\d.]+", after=FLIGHTS_HEADER)
    assert m.group(1) == champion


def test_flights_example_answer_is_the_batch_prediction_of_that_flight(demo: Demo) -> None:
    """The printed request is a real flight of the last day and the printed answer (the
    service's online path in-process: the store as of the range's end, the champion, the
    late flag) equals that flight's batch prediction."""
    from ml_platform.data import lake

    body = json.loads(demo.line(r"-d '(\{.*\})'   # score", after=FLIGHTS_HEADER).group(1))
    answer = json.loads(demo.line(r"answer to /predict .*: (\{.*\})$", after=FLIGHTS_HEADER)[1])
    assert set(body) == {
        "predict_at",
        "carrier",
        "flight",
        "origin",
        "dest",
        "tailnum",
        "sched_dep_at",
        "distance",
    }
    preds = lake.read_partitions(demo.data_dir / "lake", "flights_batch_predictions", [END_FLIGHTS])
    row = preds.set_index("flight_id").loc[answer["flight_id"]]
    assert row["predict_at"].isoformat() == body["predict_at"] and row["tailnum"] == body["tailnum"]
    assert answer["predicted_dep_delay"] == pytest.approx(row["score"], abs=1e-7)
    assert answer["late"] == bool(row["late"]) == (answer["predicted_dep_delay"] > 15.0)
    assert (answer["model_name"], answer["threshold"]) == ("flights_delay", 15.0)
