"""A scaffolded use case through the real Dagster graph, from its folder alone.

``new-use-case`` writes a throw-away folder (string entity keys, minute windows, a binary
label known a day later, the files source) into a temporary directory; pointing
``ML_PLATFORM_USE_CASE_DIRS`` at its parent makes it part of the code location, next to the
shipped use cases, without touching the package. Its jobs then run: ingestion of its daily
files -> features -> online store -> training and the gate -> batch predictions, and a
prediction is served by the service's own path (the online engine over the store, the
champion, the decision) and equals the batch prediction of that event.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from ml_platform.data import lake
from ml_platform.defs import build_definitions, code_location_use_cases, names
from ml_platform.defs.run import run_job

pytestmark = pytest.mark.slow

NAME = "clicks"
SAMPLE_DAYS = 14  # training 7 days, a 1-day label gap, validation 3 days, then served days


def test_scaffolded_use_case_runs_from_its_files_to_a_served_prediction(
    settings_env, tmp_path
) -> None:
    from ml_platform.serving.demo import answer_in_process, example_request
    from ml_platform.serving.scoring import load_model
    from ml_platform.use_cases import resolve_settings
    from ml_platform.use_cases.derive import request_fields
    from ml_platform.use_cases.scaffold import scaffold_use_case

    parent = tmp_path / "teams"
    uc = scaffold_use_case(NAME, parent, sample_days=SAMPLE_DAYS)
    s = settings_env(use_case_dirs=str(parent), train_threads=1)
    assert code_location_use_cases(s) == ("fraud", "flights", NAME)
    r = resolve_settings(uc)
    start, end = r.start_date, r.end_date
    assert (end - start).days + 1 == SAMPLE_DAYS
    defs = build_definitions([NAME], settings=s)
    instance = dg.DagsterInstance.ephemeral()

    def run(base: str, **days) -> dg.ExecuteInProcessResult:
        result = run_job(defs, uc.qualified(base), instance=instance, **days)
        assert result.success, base
        return result

    ingested = run(names.FEATURE_PIPELINE_JOB, start=start, end=end)
    assert all(e.passed for e in ingested.get_asset_check_evaluations())
    day_keys = [(start + timedelta(days=i)).isoformat() for i in range(SAMPLE_DAYS)]
    for base in (names.VALIDATED_EVENTS, names.EVENT_FEATURES):
        assert lake.list_partitions(s.lake_dir, f"{NAME}_{base}") == day_keys
    run(names.TRAINING_FEATURES_JOB, start=start, end=end)
    run(names.TRAINING_JOB)
    model = load_model("champion", model_name=uc.model_name, use_case=uc)  # the gate promoted it
    run(names.BATCH_SCORING_JOB, start=end, end=end)
    preds = lake.read_partitions(s.lake_dir, f"{NAME}_batch_predictions", [end])
    events = lake.read_partitions(s.lake_dir, f"{NAME}_validated_events", [end])
    assert len(preds) == len(events) > 0
    assert (preds["model_version"] == model.version).all()

    # a served prediction: the last event of the range (the store holds what precedes it),
    # the request the demo prints, answered as /predict answers it
    event = events.sort_values(["event_time", "event_id"]).iloc[-1]
    request = request_fields(uc, event)
    assert example_request(s, uc, end.isoformat()) == request
    assert set(request) == {"event_id", "event_time", "account", "item", "amount"}
    answer = answer_in_process(s, uc, model, request)
    batch = preds.set_index("event_id").loc[answer["event_id"]]
    assert answer["event_id"] == int(event["event_id"])
    assert answer[f"{NAME}_probability"] == pytest.approx(batch["score"], abs=1e-7)
    assert answer[f"is_{NAME}"] == bool(batch[f"is_{NAME}"])
    assert answer["model_version"] == model.version
