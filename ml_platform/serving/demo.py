"""The serving step of ``make demo``: batch predictions, then how to call the API.

The example request is the last event of the last day, so with the online store loaded as of
the range's end (``<name>_training_features_job``) the API computes exactly the features the
batch engine computed for it. Its answer is computed here, in this process, by the code the
service runs (the online engine over the store, the champion, the decision), without
recording the event: the demo starts no server.
"""

from __future__ import annotations

import json
from typing import Any

from ml_platform.settings import Settings


def run_serving_step(defs: Any, settings: Settings, use_case: Any) -> dict[str, Any]:
    """Score the demo range with the use case's champion (its batch scoring job) and print
    the API recipe with a real request and its answer."""
    from ml_platform.data import lake
    from ml_platform.defs import names
    from ml_platform.defs.run import run_job
    from ml_platform.demo import stage_done, stage_started, store_summary
    from ml_platform.serving.scoring import NoModelError, decision_column, load_model

    try:
        model = load_model("champion", model_name=use_case.model_name, use_case=use_case)
    except NoModelError:
        print("  serving: no champion registered, batch predictions skipped")
        return {}
    start, end = _range(defs, use_case, settings)
    job = use_case.qualified(names.BATCH_SCORING_JOB)
    t = stage_started(job, f"every day scored with {model.name} v{model.version}")
    run_job(defs, job, start=start, end=end, log_level="WARNING")
    table = names.lake_table(names.BATCH_PREDICTIONS, use_case.name)
    keys = lake.list_partitions(settings.lake_dir, table)
    last = lake.read_partitions(settings.lake_dir, table, keys[-1:])
    decision = decision_column(use_case)
    flagged = "flagged" if use_case.task == "binary" else f"{decision}"
    stage_done(
        job,
        t,
        f"; {len(keys)} days, last day {keys[-1] if keys else '-'}: {len(last)} "
        f"{_events_word(use_case)}, {int(last[decision].sum()) if len(last) else 0} {flagged}",
    )
    example = example_request(settings, use_case, keys[-1] if keys else None)
    host, port = settings.serving_host, settings.serving_port
    body = json.dumps(example)
    print(f"\nReal-time API (BentoML, champion + online features){_of(use_case)}:")
    print(f"  features from the {store_summary(settings, use_case)}")
    print(f"  {serve_command(use_case)}")
    for route, what in (("predict", "score (and record)"), ("features", "features, not recorded")):
        print(
            f"  curl -s -X POST http://{host}:{port}/{route} -H 'Content-Type: application/json' "
            f"-d '{body}'   # {what}"
        )
    if example:
        answer = answer_in_process(settings, use_case, model, example)
        print(
            f"  answer to /predict (computed in this process, not recorded): {json.dumps(answer)}"
        )
    print(f"  docs: http://{host}:{port}/   model: curl http://{host}:{port}/model")
    option = "" if use_case.is_flagship else f" --use-case {use_case.name}"
    print(f"  edge package: uv run ml-platform export-edge data/{_edge_folder(use_case)}{option}")
    return {"days_scored": len(keys), "model_version": model.version, "example": example}


def _range(defs: Any, use_case: Any, settings: Settings) -> tuple[Any, Any]:
    """The first and last day of the use case's partitions (its own dates)."""
    from datetime import date

    from ml_platform.defs import names

    job = defs.resolve_job_def(use_case.qualified(names.BATCH_SCORING_JOB))
    keys = job.partitions_def.get_partition_keys()
    return date.fromisoformat(keys[0]), date.fromisoformat(keys[-1])


def _of(use_case: Any) -> str:
    return "" if use_case.is_flagship else f" of {use_case.name}"


def _events_word(use_case: Any) -> str:
    return "transactions" if use_case.is_flagship else "events"


def _edge_folder(use_case: Any) -> str:
    return "edge_pkg" if use_case.is_flagship else f"{use_case.name}_edge_pkg"


def serve_command(use_case: Any) -> str:
    """How to start the use case's service (the flagship's: ``make serve``)."""
    from ml_platform.cli import serve_target

    if use_case.is_flagship:
        return (
            "make serve        # = uv run bentoml serve ml_platform.serving.service:FraudDetector"
        )
    return f"uv run bentoml serve {serve_target(use_case.service, str(use_case.folder))}"


def example_request(settings: Settings, use_case: Any, day: str | None) -> dict[str, Any]:
    """The last event of the last scored day in event order, as the request a client sends
    (the declared request fields, JSON types). The online store holds the range up to that
    event, so what the API computes for it is exactly its batch features: every aggregate
    of the store is of the events before it (for an earlier event of that day, a window
    mean would also count the day's later events)."""
    from ml_platform.data import lake
    from ml_platform.defs import names
    from ml_platform.features.definitions import feature_set
    from ml_platform.use_cases.derive import request_fields

    if not day:
        return {}
    table = names.lake_table(names.VALIDATED_EVENTS, use_case.name)
    events = lake.read_partitions(settings.lake_dir, table, [day])
    if not len(events):
        return {}
    fs = feature_set(use_case)
    last = events.sort_values([fs.event_time, fs.event_id], kind="stable").iloc[-1]
    return request_fields(use_case, last)


def answer_in_process(
    settings: Settings, use_case: Any, model: Any, request: dict[str, Any]
) -> dict[str, Any]:
    """What ``POST /predict`` answers for ``request``: the online engine over the store
    (nothing recorded), the champion's score and its decision, under the API's names."""
    import numpy as np

    from ml_platform.features.definitions import feature_set
    from ml_platform.features.online import OnlineFeatureEngine
    from ml_platform.features.stores.base import open_store
    from ml_platform.serving.event_ids import event_id_function
    from ml_platform.serving.schemas import answer_fields
    from ml_platform.use_cases.loader import engine_label_delay

    fs = feature_set(use_case)
    record = dict(request)
    derive = event_id_function(use_case)
    if derive is not None:
        record[fs.event_id] = derive(record)
    delay = engine_label_delay(use_case, settings.label_delay_days)
    with open_store(settings, delay, use_case=use_case) as store:
        engine = OnlineFeatureEngine(store, delay, use_case=use_case)
        x = np.asarray(engine.compute(engine.parse(record)), dtype=np.float64)
    score = float(model.score(x.reshape(1, -1))[0])
    score_field, decision_field = answer_fields(use_case)
    return {
        fs.event_id: record[fs.event_id],
        score_field: score,
        decision_field: bool(model.decide(np.array([score]))[0]),
        "threshold": model.threshold,
        "model_name": model.name,
        "model_version": model.version,
    }
