"""The real-time fraud API: ``bentoml serve ml_platform.serving.service:FraudDetector``.

Request path (one transaction): strict pydantic parse -> online features from the shared
definitions (the same code the batch engine is proven equal to) -> champion's native
booster on a numpy row -> answer. Everything else is off that path: the prediction log and
the shadow challenger run in a writer thread, and the registry aliases are polled in
another thread (a new champion is served without a restart; ``POST /reload`` forces it).

No champion yet -> 503 with a message (the service still starts and keeps polling); bad
input -> 400 naming the field and the reason; never a 500 for a bad request. A transaction
dated after the service clock plus ``serving_max_future_seconds`` is bad input: recorded, it
would move the online store's watermark ahead and prune real history.
Dagster, Evidently and (at request time) MLflow are never imported here.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Annotated, Any

from ml_platform.runtime import quiet_telemetry

quiet_telemetry()  # before BentoML and MLflow are imported: no usage tracking, no network

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import Field  # noqa: E402

from ml_platform.features.online import parse_tx  # noqa: E402
from ml_platform.features.stores.base import EventRecord, ns_to_iso  # noqa: E402
from ml_platform.serving import guards  # noqa: E402
from ml_platform.serving.schemas import (  # noqa: E402
    FeatureVector,
    ModelDescription,
    OnlineStoreDescription,
    Prediction,
    Transaction,
)
from ml_platform.settings import get_settings  # noqa: E402

log = logging.getLogger("ml_platform.serving")
_SETTINGS = get_settings()
MAX_BATCH = _SETTINGS.serving_max_batch

#: Plain FastAPI routes mounted next to the BentoML APIs (GET /model, POST /reload).
admin = FastAPI(title="fraud_detector admin", docs_url=None, redoc_url=None, openapi_url=None)


def _no_model_response(load_error: str | None = None) -> JSONResponse:
    body = {
        "error": "no champion model: the registry has no loadable "
        f"'{_SETTINGS.model_name}@champion' yet; train and promote one "
        "(make demo, or ml-platform promote VERSION), then retry or POST /reload",
    }
    if load_error:
        body["load_error"] = load_error
    return JSONResponse(body, status_code=503)


def _bad_request(loc: tuple[str | int, ...], reason: str) -> JSONResponse:
    """400 with ``detail[].loc`` as pydantic gives it, e.g. ``["transactions", 3, "tx_amount"]``."""
    where = ".".join(str(part) for part in loc)
    return JSONResponse(
        {"error": f"{where}: {reason}", "detail": [{"loc": list(loc), "msg": reason}]},
        status_code=400,
    )


@bentoml.asgi_app(admin, path="/")
@bentoml.service(
    name="fraud_detector",
    http={"host": _SETTINGS.serving_host, "port": _SETTINGS.serving_port},
    workers=_SETTINGS.serving_workers,
    traffic={"timeout": 30},
    metrics={"enabled": True},
)
class FraudDetector:
    """Champion scoring with online features, shadow challenger, prediction log."""

    def __init__(self) -> None:
        from ml_platform.features import FEATURE_COLUMNS, FEATURE_VERSION
        from ml_platform.features.online import OnlineFeatureEngine
        from ml_platform.features.stores.base import open_store
        from ml_platform.serving.prediction_log import (
            LogEntry,
            PredictionLogWriter,
            prediction_log_path,
        )
        from ml_platform.serving.scoring import ModelSlots

        s = get_settings()
        self.settings = s
        # background threads (log writer, alias poller) hand the GIL back within 1 ms
        # instead of Python's default 5 ms: that interval is the request path's worst wait
        sys.setswitchinterval(0.001)
        self.feature_columns = list(FEATURE_COLUMNS)
        self.feature_version = FEATURE_VERSION
        self.store = open_store(s)
        self.engine = OnlineFeatureEngine(self.store, s.label_delay_days)
        self.max_future_ns = int(s.serving_max_future_seconds * 1e9)
        # one engine, used from the event loop only; the lock guards admin-thread access
        self._engine_lock = threading.Lock()
        self._store_info = self._check_store()
        self._log_entry = LogEntry
        self.log_writer = PredictionLogWriter(
            prediction_log_path(s), self.feature_columns, flush_seconds=s.serving_log_flush_seconds
        )
        self.slots = ModelSlots(s.model_name)
        versions = self.slots.refresh()
        log.info("fraud_detector: serving %s (registry %s)", versions, s.tracking_uri)
        self.slots.start_polling(s.serving_reload_seconds)
        self._warm_up()

    def _warm_up(self) -> None:
        """Score one zero row so the first request does not pay lazy initialisation."""
        for model in (self.slots.champion, self.slots.challenger):
            if model is not None:
                model.score(np.zeros((1, len(self.feature_columns))))

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.slots.stop()
        self.log_writer.close(timeout=5)
        self.store.close()

    def _check_store(self) -> OnlineStoreDescription:
        """Count the store's entities (``/model`` shows them) and warn when it is empty or
        older than the lake: requests would then see too little history (skew)."""
        from datetime import UTC, datetime

        from ml_platform.data import lake
        from ml_platform.training.datasets import TRANSACTIONS_TABLE

        kind = self.store.kind
        counted_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:  # the stores are thread-safe: the request path's engine lock is not taken
            watermark = ns_to_iso(self.store.watermark_ns())
            entities = self.store.entity_counts()
        except guards.STORE_ERRORS as exc:
            log.warning("fraud_detector: online store (%s) unreadable: %s", kind, exc)
            return OnlineStoreDescription(
                kind=kind, watermark=None, entities={}, error=f"{type(exc).__name__}: {exc}"
            )
        days = lake.list_partitions(self.settings.lake_dir, TRANSACTIONS_TABLE)
        newest = days[-1] if days else None
        hint = "materialize online_feature_store (make demo, or the daily pipeline)"
        if watermark is None:
            log.warning(
                "fraud_detector: online store (%s) is empty, newest %s day is %s: every "
                "request is computed without history; %s",
                kind,
                TRANSACTIONS_TABLE,
                newest or "-",
                hint,
            )
        elif newest is not None and watermark[:10] < newest:
            log.warning(
                "fraud_detector: online store (%s) watermark %s is older than the newest %s "
                "day %s: requests miss that history; %s",
                kind,
                watermark,
                TRANSACTIONS_TABLE,
                newest,
                hint,
            )
        else:
            log.info("fraud_detector: online store (%s) at %s, %s", kind, watermark, entities)
        return OnlineStoreDescription(
            kind=kind, watermark=watermark, entities=entities, entities_counted_at=counted_at
        )

    # --- the request path -----------------------------------------------------------------
    def _parse(self, record: dict[str, Any]) -> EventRecord:
        """The engine's checks, then the clock: a transaction from the future is refused
        before anything is recorded (``ValueError`` "field: reason")."""
        parsed = parse_tx(record)
        now_ns = time.time_ns()
        if parsed.time_ns > now_ns + self.max_future_ns:
            raise ValueError(
                f"tx_datetime: {ns_to_iso(parsed.time_ns)} is "
                f"{(parsed.time_ns - now_ns) / 1e9:.0f} s after the service clock "
                f"({ns_to_iso(now_ns)} UTC); at most ML_PLATFORM_SERVING_MAX_FUTURE_SECONDS = "
                f"{self.settings.serving_max_future_seconds:g} s ahead is accepted"
            )
        return parsed

    def _features(self, tx: Any) -> np.ndarray:
        """Online features (before recording), then the transaction joins the state."""
        with self._engine_lock:
            x = self.engine.compute_and_record(tx)
        return np.asarray(x, dtype=np.float64)

    @bentoml.api(route="/predict")
    async def predict(self, tx: Transaction, /) -> Prediction:
        """Score one transaction with the champion (body: the transaction JSON itself)."""
        t0 = time.perf_counter()
        record = tx.as_record()
        try:  # the engine's own checks (e.g. a date pandas cannot hold) name the field
            parsed = self._parse(record)
        except ValueError as exc:
            return _bad_request(*_split_reason(exc))  # type: ignore[return-value]
        model = self.slots.champion
        if model is None:  # checked before the state changes: a retry is clean
            return _no_model_response(self.slots.last_error)  # type: ignore[return-value]
        try:
            x = self._features(parsed)
        except ValueError as exc:
            return _bad_request(*_split_reason(exc))  # type: ignore[return-value]
        except guards.STORE_ERRORS as exc:  # online store down: 503, recovers by itself
            return guards.store_unavailable_response(exc)  # type: ignore[return-value]
        score = float(model.score(x.reshape(1, -1))[0])
        answer = Prediction(
            transaction_id=tx.transaction_id,
            fraud_probability=score,
            is_fraud=score >= model.threshold,
            threshold=model.threshold,
            model_name=model.name,
            model_version=model.version,
        )
        self._log("/predict", record, x, score, model, (time.perf_counter() - t0) * 1000)
        return answer

    @bentoml.api(route="/predict_batch")
    async def predict_batch(
        self,
        transactions: Annotated[list[Transaction], Field(min_length=1, max_length=MAX_BATCH)],
    ) -> list[Prediction]:
        """Score up to ``serving_max_batch`` transactions (body ``{"transactions": [...]}``).

        Processed in event order (tx_datetime, transaction_id), so two transactions of one
        card in the same batch see each other exactly as they would one by one; answers
        come back in the request's order.
        """
        t0 = time.perf_counter()
        records = [t.as_record() for t in transactions]
        parsed = []
        for i, rec in enumerate(records):
            try:
                parsed.append(self._parse(rec))
            except ValueError as exc:
                field, reason = _split_reason(exc)
                return _bad_request(("transactions", i, *field), reason)  # type: ignore[return-value]
        model = self.slots.champion
        if model is None:
            return _no_model_response(self.slots.last_error)  # type: ignore[return-value]
        order = sorted(
            range(len(transactions)),
            key=lambda i: (transactions[i].tx_datetime, transactions[i].transaction_id),
        )
        x = np.empty((len(records), len(self.feature_columns)))
        for i in order:
            try:
                x[i] = self._features(parsed[i])
            except guards.STORE_ERRORS as exc:
                return guards.store_unavailable_response(exc)  # type: ignore[return-value]
            except ValueError as exc:
                field, reason = _split_reason(exc)
                return _bad_request(("transactions", i, *field), reason)  # type: ignore[return-value]
        scores = model.score(x)
        per_tx_ms = (time.perf_counter() - t0) * 1000 / len(records)
        answers = []
        for i, rec in enumerate(records):
            score = float(scores[i])
            answers.append(
                Prediction(
                    transaction_id=rec["transaction_id"],
                    fraud_probability=score,
                    is_fraud=score >= model.threshold,
                    threshold=model.threshold,
                    model_name=model.name,
                    model_version=model.version,
                )
            )
            self._log("/predict_batch", rec, x[i], score, model, per_tx_ms)
        return answers

    @bentoml.api(route="/features")
    async def features(self, tx: Transaction, /) -> FeatureVector:
        """Online features of a transaction from the store, NOT recorded (debugging, skew
        checks: asking twice gives the same answer and changes no state)."""
        try:
            parsed = self._parse(tx.as_record())
            with self._engine_lock:
                x = self.engine.compute(parsed)
        except ValueError as exc:
            return _bad_request(*_split_reason(exc))  # type: ignore[return-value]
        except guards.STORE_ERRORS as exc:
            return guards.store_unavailable_response(exc)  # type: ignore[return-value]
        return FeatureVector(
            transaction_id=tx.transaction_id,
            tx_datetime=tx.tx_datetime,
            feature_version=self.feature_version,
            features=dict(zip(self.feature_columns, x.tolist(), strict=True)),
        )

    @bentoml.api(route="/echo")
    async def echo(self, tx: Transaction, /) -> Transaction:
        """The framework floor for the latency benchmark: parse and return, nothing else."""
        return tx

    def _log(
        self, endpoint: str, record: dict, x: np.ndarray, score: float, model: Any, ms: float
    ) -> None:
        self.log_writer.submit(
            self._log_entry(
                logged_at=time.time(),
                request_id=None,  # drawn by the writer thread, off the request path
                endpoint=endpoint,
                transaction=record,
                features=x,
                score=score,
                model=model,
                latency_ms=ms,
                shadow=self.slots.challenger,
            )
        )

    # --- admin routes (plain FastAPI, GET allowed) ------------------------------------------
    @admin.get("/model")
    def model_info(self) -> ModelDescription:
        """The champion served (and the shadow challenger, if any) and the online store:
        its watermark read now (one lookup), entities as counted at start-up / reload."""
        champ, chall = self.slots.champion, self.slots.challenger
        store = self._store_info
        try:
            store = store.model_copy(update={"watermark": ns_to_iso(self.store.watermark_ns())})
        except guards.STORE_ERRORS as exc:
            store = store.model_copy(update={"error": f"{type(exc).__name__}: {exc}"})
        return ModelDescription(
            model_name=self.settings.model_name,
            champion=champ.describe() if champ else None,
            challenger=chall.describe() if chall else None,
            feature_version=self.feature_version,
            feature_columns=self.feature_columns,
            loaded_at=self.slots.last_refresh,
            last_error=self.slots.last_error,
            online_store=store,
        )

    @admin.post("/reload")
    def reload(self) -> dict[str, Any]:
        """Re-read the registry aliases now (the poller does it every few seconds anyway)
        and re-check the online store (entity counts, the empty/stale warning)."""
        versions = self.slots.refresh()
        self._store_info = self._check_store()
        return {
            "serving": versions,
            "error": self.slots.last_error,
            "online_store": self._store_info.model_dump(),
        }

    @admin.get("/log_stats")
    def log_stats(self) -> dict[str, int]:
        """Prediction-log writer counters (rows written, entries dropped, shadow errors)."""
        return self.log_writer.stats()


# Bearer-token auth (if ML_PLATFORM_API_TOKEN is set) and the request body limit.
guards.install(FraudDetector, _SETTINGS)


def _split_reason(exc: Exception) -> tuple[tuple[str], str]:
    """``"field: reason"`` messages (the platform's convention) -> ((field,), reason)."""
    text = str(exc)
    field, sep, reason = text.partition(": ")
    if sep and field and " " not in field:
        return (field,), reason
    return ("body",), text
