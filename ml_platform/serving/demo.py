"""The serving step of ``make demo``: batch predictions, then how to call the API.

The example request is a real transaction of the last day, so with the online store loaded
as of the range's end (``<name>_training_features_job``) the API computes exactly the features
the batch engine computed for it.
"""

from __future__ import annotations

import json
from typing import Any

from ml_platform.settings import Settings


def run_serving_step(defs: Any, settings: Settings, use_case: Any) -> dict[str, Any]:
    """Score the demo range with the use case's champion (its batch scoring job) and print
    the API recipe."""
    from ml_platform.data import lake
    from ml_platform.defs import names
    from ml_platform.defs.run import run_job
    from ml_platform.demo import stage_done, stage_started, store_summary
    from ml_platform.serving.scoring import NoModelError, load_model

    try:
        model = load_model("champion", model_name=use_case.model_name)
    except NoModelError:
        print("  serving: no champion registered, batch predictions skipped")
        return {}
    job = use_case.qualified(names.BATCH_SCORING_JOB)
    t = stage_started(job, f"every day scored with {model.name} v{model.version}")
    run_job(
        defs,
        job,
        start=settings.start_date,
        end=settings.end_date,
        log_level="WARNING",
    )
    keys = lake.list_partitions(settings.lake_dir, "batch_predictions")
    last = lake.read_partitions(settings.lake_dir, "batch_predictions", keys[-1:])
    stage_done(
        job,
        t,
        f"; {len(keys)} days, last day {keys[-1] if keys else '-'}: {len(last)} transactions, "
        f"{int(last['is_fraud'].sum()) if len(last) else 0} flagged",
    )
    example = _example(settings, keys[-1] if keys else None)
    host, port = settings.serving_host, settings.serving_port
    body = json.dumps(example)
    print("\nReal-time API (BentoML, champion + online features):")
    print(f"  features from the {store_summary(settings)}")
    print("  make serve        # = uv run bentoml serve ml_platform.serving.service:FraudDetector")
    for route, what in (("predict", "score (and record)"), ("features", "features, not recorded")):
        print(
            f"  curl -s -X POST http://{host}:{port}/{route} -H 'Content-Type: application/json' "
            f"-d '{body}'   # {what}"
        )
    print(f"  docs: http://{host}:{port}/   model: curl http://{host}:{port}/model")
    print("  edge package: uv run ml-platform export-edge data/edge_pkg")
    return {"days_scored": len(keys), "model_version": model.version}


def _example(settings: Settings, day: str | None) -> dict[str, Any]:
    """A real transaction of the last scored day (so the customer has online history)."""
    from ml_platform.data import lake
    from ml_platform.training.datasets import TRANSACTIONS_TABLE

    body = {
        "transaction_id": 1,
        "tx_datetime": f"{settings.end_date}T12:00:00",
        "customer_id": 0,
        "terminal_id": 0,
        "tx_amount": 42.5,
    }
    if day:
        tx = lake.read_partitions(settings.lake_dir, TRANSACTIONS_TABLE, [day])
        if len(tx):
            r = tx.iloc[len(tx) // 2]
            body = {
                "transaction_id": int(r["transaction_id"]),
                "tx_datetime": r["tx_datetime"].isoformat(),
                "customer_id": int(r["customer_id"]),
                "terminal_id": int(r["terminal_id"]),
                "tx_amount": float(r["tx_amount"]),
            }
    return body
