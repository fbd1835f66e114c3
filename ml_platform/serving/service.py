"""The real-time API of every use case: ``bentoml serve ml_platform.serving.service:FraudDetector``.

``build_service(use_case)`` builds one BentoML service class from a use case's declaration:
the request, answer and feature-vector models derived from its schema, the online engine on
its own store, its registered model, its prediction log. The package's use cases are
attributes of this module, under the ``service`` their folders declare (``FraudDetector``);
a team's folder has a two-line ``service.py`` (``ml-platform new-use-case`` writes it).

Request path (one event): strict pydantic parse -> online features from the shared
definitions (the same code the batch engine is proven equal to) -> champion's native
model on a numpy row -> answer. Everything else is off that path: the prediction log and
the shadow challenger run in a writer thread, and the registry aliases are polled in
another thread (a new champion is served without a restart; ``POST /reload`` forces it).

No champion yet -> 503 with a message (the service still starts and keeps polling); bad
input -> 400 naming the field and the reason; never a 500 for a bad request. An event dated
after the service clock plus ``serving_max_future_seconds`` is bad input: recorded, it
would move the online store's watermark ahead and prune real history.
Dagster, Evidently and (at request time) MLflow are never imported here.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from ml_platform.runtime import quiet_telemetry

quiet_telemetry()  # before BentoML and MLflow are imported: no usage tracking, no network

import bentoml  # noqa: E402
import numpy as np  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import Field  # noqa: E402

from ml_platform.features.stores.base import EventRecord, ns_to_iso  # noqa: E402
from ml_platform.serving import guards  # noqa: E402
from ml_platform.serving.schemas import (  # noqa: E402
    ModelDescription,
    OnlineStoreDescription,
    answer_fields,
    feature_vector_model,
    prediction_model,
    request_model,
)
from ml_platform.settings import get_settings  # noqa: E402
from ml_platform.use_cases.loader import UseCase  # noqa: E402

log = logging.getLogger("ml_platform.serving")
_SETTINGS = get_settings()
MAX_BATCH = _SETTINGS.serving_max_batch
#: This module's name: a package use case whose ``service`` is ``<module>:<Name>`` is served
#: by the attribute ``Name`` of this module, built on first access.
MODULE = __name__


def _no_model_response(model_name: str, load_error: str | None = None) -> JSONResponse:
    body = {
        "error": "no champion model: the registry has no loadable "
        f"'{model_name}@champion' yet; train and promote one "
        "(make demo, or ml-platform promote VERSION), then retry or POST /reload",
    }
    if load_error:
        body["load_error"] = load_error
    return JSONResponse(body, status_code=503)


def _bad_request(loc: tuple[str | int, ...], reason: str) -> JSONResponse:
    """400 with ``detail[].loc`` as pydantic gives it, e.g. ``["events", 3, "amount"]``."""
    where = ".".join(str(part) for part in loc)
    return JSONResponse(
        {"error": f"{where}: {reason}", "detail": [{"loc": list(loc), "msg": reason}]},
        status_code=400,
    )


def _api(func: Any, route: str, params: dict[str, Any], returns: Any, *, positional: bool) -> Any:
    """A BentoML API from a function whose parameter types are the use case's models: the
    signature is set explicitly (the types are built at run time, per use case)."""
    kind = inspect.Parameter.POSITIONAL_ONLY if positional else inspect.Parameter.KEYWORD_ONLY
    func.__signature__ = inspect.Signature(
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
            *(inspect.Parameter(n, kind, annotation=a) for n, a in params.items()),
        ],
        return_annotation=returns,
    )
    func.__annotations__ = {**params, "return": returns}
    return bentoml.api(route=route)(func)


class UseCaseService:
    """What every use case's service does; ``build_service`` adds the API routes, typed by
    the use case's own request and answer models."""

    use_case: UseCase
    #: the answer model and the names of its score and decision fields
    answer_model: Any
    score_field: str
    decision_field: str

    def __init__(self) -> None:
        from ml_platform.features.definitions import feature_set
        from ml_platform.features.online import OnlineFeatureEngine
        from ml_platform.features.stores.base import open_store
        from ml_platform.serving.event_ids import event_id_function
        from ml_platform.serving.prediction_log import (
            LogEntry,
            PredictionLogWriter,
            log_layout,
            prediction_log_path,
        )
        from ml_platform.serving.scoring import ModelSlots
        from ml_platform.use_cases.loader import engine_label_delay, registered_model_name

        s = get_settings()
        uc = self.use_case
        self.settings = s
        self.model_name = registered_model_name(uc, s.model_name)
        # background threads (log writer, alias poller) hand the GIL back within 1 ms
        # instead of Python's default 5 ms: that interval is the request path's worst wait
        sys.setswitchinterval(0.001)
        fs = feature_set(uc)
        self.feature_columns = list(fs.columns)
        self.feature_version = fs.version
        self.event_id = fs.event_id
        self.event_time = fs.event_time
        self._derive_event_id = event_id_function(uc)
        delay = engine_label_delay(uc, s.label_delay_days)
        self.store = open_store(s, delay, use_case=uc)
        self.engine = OnlineFeatureEngine(self.store, delay, use_case=uc)
        self.max_future_ns = int(s.serving_max_future_seconds * 1e9)
        # one engine, used from the event loop only; the lock guards admin-thread access
        self._engine_lock = threading.Lock()
        self._store_info = self._check_store()
        self._log_entry = LogEntry
        self.log_writer = PredictionLogWriter(
            prediction_log_path(s, uc),
            self.feature_columns,
            flush_seconds=s.serving_log_flush_seconds,
            layout=log_layout(uc),
        )
        self.slots = ModelSlots(self.model_name, use_case=uc)
        versions = self.slots.refresh()
        log.info("%s: serving %s (registry %s)", self.model_name, versions, s.tracking_uri)
        self.slots.start_polling(s.serving_reload_seconds)
        self._warm_up()

    def _warm_up(self) -> None:
        """Score one zero row so the first request does not pay lazy initialisation."""
        for model in (self.slots.champion, self.slots.challenger):
            if model is not None:
                model.score(np.zeros((1, len(self.feature_columns))))

    def _stop(self) -> None:
        self.slots.stop()
        self.log_writer.close(timeout=5)
        self.store.close()

    def _check_store(self) -> OnlineStoreDescription:
        """Count the store's entities (``/model`` shows them) and warn when it is empty or
        older than the lake: requests would then see too little history (skew)."""
        from datetime import UTC, datetime

        from ml_platform.data import lake
        from ml_platform.features.definitions import DEFAULT_USE_CASE
        from ml_platform.training.datasets import TRANSACTIONS_TABLE

        kind, name = self.store.kind, self.model_name
        counted_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:  # the stores are thread-safe: the request path's engine lock is not taken
            watermark = ns_to_iso(self.store.watermark_ns())
            entities = self.store.entity_counts()
        except guards.STORE_ERRORS as exc:
            log.warning("%s: online store (%s) unreadable: %s", name, kind, exc)
            return OnlineStoreDescription(
                kind=kind, watermark=None, entities={}, error=f"{type(exc).__name__}: {exc}"
            )
        # the lake's newest day is known for the default use case (its table's name);
        # another's store is only checked for emptiness
        days = (
            lake.list_partitions(self.settings.lake_dir, TRANSACTIONS_TABLE)
            if self.use_case.name == DEFAULT_USE_CASE
            else []
        )
        newest = days[-1] if days else None
        hint = "materialize online_feature_store (make demo, or the daily pipeline)"
        if watermark is None:
            log.warning(
                "%s: online store (%s) is empty, newest %s day is %s: every "
                "request is computed without history; %s",
                name,
                kind,
                TRANSACTIONS_TABLE,
                newest or "-",
                hint,
            )
        elif newest is not None and watermark[:10] < newest:
            log.warning(
                "%s: online store (%s) watermark %s is older than the newest %s "
                "day %s: requests miss that history; %s",
                name,
                kind,
                watermark,
                TRANSACTIONS_TABLE,
                newest,
                hint,
            )
        else:
            log.info("%s: online store (%s) at %s, %s", name, kind, watermark, entities)
        return OnlineStoreDescription(
            kind=kind, watermark=watermark, entities=entities, entities_counted_at=counted_at
        )

    # --- the request path -----------------------------------------------------------------
    def _record(self, request: Any) -> dict[str, Any]:
        """The request as a plain dict, with its derived event id when the schema derives one
        (the same hash the lake's rows get, so the log joins their labels)."""
        record = request.as_record()
        if self._derive_event_id is not None:
            record[self.event_id] = self._derive_event_id(record)
        return record

    def _parse(self, record: dict[str, Any]) -> EventRecord:
        """The engine's checks, then the clock: an event from the future is refused
        before anything is recorded (``ValueError`` "field: reason")."""
        parsed = self.engine.parse(record)
        now_ns = time.time_ns()
        if parsed.time_ns > now_ns + self.max_future_ns:
            raise ValueError(
                f"{self.event_time}: {ns_to_iso(parsed.time_ns)} is "
                f"{(parsed.time_ns - now_ns) / 1e9:.0f} s after the service clock "
                f"({ns_to_iso(now_ns)} UTC); at most ML_PLATFORM_SERVING_MAX_FUTURE_SECONDS = "
                f"{self.settings.serving_max_future_seconds:g} s ahead is accepted"
            )
        return parsed

    def _features(self, event: EventRecord) -> np.ndarray:
        """Online features (before recording), then the event joins the state."""
        with self._engine_lock:
            x = self.engine.compute_and_record(event)
        return np.asarray(x, dtype=np.float64)

    def _answer(self, record: dict[str, Any], score: float, model: Any) -> Any:
        return self.answer_model(
            **{
                self.event_id: record[self.event_id],
                self.score_field: score,
                self.decision_field: score > model.threshold
                if model.strict
                else score >= model.threshold,  # ScoringModel.decide, one scalar
                "threshold": model.threshold,
                "model_name": model.name,
                "model_version": model.version,
            }
        )

    async def _predict(self, request: Any) -> Any:
        t0 = time.perf_counter()
        try:  # the engine's own checks (e.g. a date pandas cannot hold) name the field
            record = self._record(request)
            parsed = self._parse(record)
        except ValueError as exc:
            return _bad_request(*_split_reason(exc))
        model = self.slots.champion
        if model is None:  # checked before the state changes: a retry is clean
            return _no_model_response(self.model_name, self.slots.last_error)
        try:
            x = self._features(parsed)
        except ValueError as exc:
            return _bad_request(*_split_reason(exc))
        except guards.STORE_ERRORS as exc:  # online store down: 503, recovers by itself
            return guards.store_unavailable_response(exc)
        score = float(model.score(x.reshape(1, -1))[0])
        answer = self._answer(record, score, model)
        self._log("/predict", record, x, score, model, (time.perf_counter() - t0) * 1000)
        return answer

    async def _predict_batch(self, requests: list[Any]) -> Any:
        """Processed in event order (event time, event id), so two events of one entity in
        the same batch see each other exactly as they would one by one; answers come back
        in the request's order."""
        t0 = time.perf_counter()
        key = self.use_case.spec.api.batch_key
        records, parsed = [], []
        for i, request in enumerate(requests):
            try:
                records.append(self._record(request))
                parsed.append(self._parse(records[-1]))
            except ValueError as exc:
                field, reason = _split_reason(exc)
                return _bad_request((key, i, *field), reason)
        model = self.slots.champion
        if model is None:
            return _no_model_response(self.model_name, self.slots.last_error)
        order = sorted(range(len(parsed)), key=lambda i: (parsed[i].time_ns, parsed[i].event_id))
        x = np.empty((len(records), len(self.feature_columns)))
        for i in order:
            try:
                x[i] = self._features(parsed[i])
            except guards.STORE_ERRORS as exc:
                return guards.store_unavailable_response(exc)
            except ValueError as exc:
                field, reason = _split_reason(exc)
                return _bad_request((key, i, *field), reason)
        scores = model.score(x)
        per_event_ms = (time.perf_counter() - t0) * 1000 / len(records)
        answers = []
        for i, record in enumerate(records):
            score = float(scores[i])
            answers.append(self._answer(record, score, model))
            self._log("/predict_batch", record, x[i], score, model, per_event_ms)
        return answers

    async def _online_features(self, request: Any) -> Any:
        """Online features of an event from the store, NOT recorded (debugging, skew
        checks: asking twice gives the same answer and changes no state)."""
        try:
            record = self._record(request)
            parsed = self._parse(record)
            with self._engine_lock:
                x = self.engine.compute(parsed)
        except ValueError as exc:
            return _bad_request(*_split_reason(exc))
        except guards.STORE_ERRORS as exc:
            return guards.store_unavailable_response(exc)
        return self.feature_vector_model(
            **{
                self.event_id: record[self.event_id],
                self.event_time: record[self.event_time],
                "feature_version": self.feature_version,
                "features": dict(zip(self.feature_columns, x.tolist(), strict=True)),
            }
        )

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

    # --- admin (plain FastAPI, GET allowed) -----------------------------------------------
    def _model_info(self) -> ModelDescription:
        champ, chall = self.slots.champion, self.slots.challenger
        store = self._store_info
        try:
            store = store.model_copy(update={"watermark": ns_to_iso(self.store.watermark_ns())})
        except guards.STORE_ERRORS as exc:
            store = store.model_copy(update={"error": f"{type(exc).__name__}: {exc}"})
        return ModelDescription(
            model_name=self.model_name,
            champion=champ.describe() if champ else None,
            challenger=chall.describe() if chall else None,
            feature_version=self.feature_version,
            feature_columns=self.feature_columns,
            loaded_at=self.slots.last_refresh,
            last_error=self.slots.last_error,
            online_store=store,
        )

    def _reload(self) -> dict[str, Any]:
        versions = self.slots.refresh()
        self._store_info = self._check_store()
        return {
            "serving": versions,
            "error": self.slots.last_error,
            "online_store": self._store_info.model_dump(),
        }


def _resolve(use_case: UseCase | str | Path) -> UseCase:
    """A loaded use case, one by name (package folders, then ML_PLATFORM_USE_CASE_DIRS), or
    a folder of its own (a team's ``service.py`` passes its folder: no variable needed)."""
    if isinstance(use_case, UseCase):
        return use_case
    if isinstance(use_case, Path):
        from ml_platform.use_cases.loader import load_use_case

        return load_use_case(use_case)
    from ml_platform.features.online import resolve_use_case

    return resolve_use_case(use_case)


def build_service(use_case: UseCase | str | Path, *, module: str | None = None) -> Any:
    """The BentoML service of a use case, named after its model (``fraud_detector``).

    Routes: ``POST /predict`` (one event), ``/predict_batch`` (``{<batch_key>: [...]}``, at
    most ``serving_max_batch``), ``/features`` (not recorded), ``/echo`` (the latency floor);
    ``GET /model``, ``POST /reload``, ``GET /log_stats``. ``module`` is where the result is
    assigned at module level (default: the caller's), which BentoML needs to re-import it.
    """
    uc = _resolve(use_case)
    api = uc.spec.api
    request = request_model(uc, api.request_name)
    answer = prediction_model(uc)
    vector = feature_vector_model(uc)
    score_field, decision_field = answer_fields(uc)
    admin = FastAPI(title=f"{uc.model_name} admin", docs_url=None, redoc_url=None, openapi_url=None)

    async def predict(self, event):
        """Score one event with the champion (body: the event JSON itself)."""
        return await self._predict(event)

    async def predict_batch(self, **body):
        """Score up to ``serving_max_batch`` events in one request."""
        return await self._predict_batch(body[api.batch_key])

    async def features(self, event):
        """Online features of an event from the store, NOT recorded."""
        return await self._online_features(event)

    async def echo(self, event):
        """The framework floor for the latency benchmark: parse and return, nothing else."""
        return event

    def model_info(self) -> ModelDescription:
        """The champion served (and the shadow challenger, if any) and the online store:
        its watermark read now (one lookup), entities as counted at start-up / reload."""
        return self._model_info()

    def reload(self) -> dict[str, Any]:
        """Re-read the registry aliases now (the poller does it every few seconds anyway)
        and re-check the online store (entity counts, the empty/stale warning)."""
        return self._reload()

    def log_stats(self) -> dict[str, int]:
        """Prediction-log writer counters (rows written, entries dropped, shadow errors)."""
        return self.log_writer.stats()

    def shutdown(self) -> None:
        self._stop()

    batch = Annotated[list[request], Field(min_length=1, max_length=MAX_BATCH)]
    namespace = {
        "__module__": MODULE,
        "__doc__": f"The real-time API of use case {uc.name!r}: {uc.spec.description}".strip(),
        "use_case": uc,
        "answer_model": answer,
        "feature_vector_model": vector,
        "score_field": score_field,
        "decision_field": decision_field,
        "predict": _api(predict, "/predict", {"event": request}, answer, positional=True),
        "predict_batch": _api(
            predict_batch, "/predict_batch", {api.batch_key: batch}, list[answer], positional=False
        ),
        "features": _api(features, "/features", {"event": request}, vector, positional=True),
        "echo": _api(echo, "/echo", {"event": request}, request, positional=True),
        "model_info": admin.get("/model")(model_info),
        "reload": admin.post("/reload")(reload),
        "log_stats": admin.get("/log_stats")(log_stats),
        "shutdown": bentoml.on_shutdown(shutdown),
    }
    cls = type(_class_name(uc), (UseCaseService,), namespace)
    svc = bentoml.asgi_app(admin, path="/")(
        bentoml.service(
            name=uc.model_name,
            http={"host": _SETTINGS.serving_host, "port": _SETTINGS.serving_port},
            workers=_SETTINGS.serving_workers,
            traffic={"timeout": 30},
            metrics={"enabled": True},
        )(cls)
    )
    # Bearer-token auth (if ML_PLATFORM_API_TOKEN is set) and the request body limit.
    guards.install(svc, _SETTINGS)
    svc._caller_module = module or sys._getframe(1).f_globals["__name__"]
    return svc


def _class_name(uc: UseCase) -> str:
    from ml_platform.use_cases.spec import camel_name

    return uc.service.partition(":")[2] or camel_name(uc.name)


def __getattr__(name: str) -> Any:
    """``FraudDetector`` & co.: the service of the package use case that declares
    ``<this module>:<name>``, built on first access and kept as a module attribute."""
    if name.startswith("_"):  # dunder probes by tools: never a service
        raise AttributeError(f"module {MODULE!r} has no attribute {name!r}")
    from ml_platform.use_cases.loader import PACKAGE_ROOT, discover, load_use_case

    for folder in discover([PACKAGE_ROOT]):
        uc = load_use_case(folder)
        if uc.service == f"{MODULE}:{name}":
            svc = build_service(uc, module=MODULE)
            globals()[name] = svc
            return svc
    raise AttributeError(f"module {MODULE!r} has no attribute {name!r}")


def _split_reason(exc: Exception) -> tuple[tuple[str], str]:
    """``"field: reason"`` messages (the platform's convention) -> ((field,), reason)."""
    text = str(exc)
    field, sep, reason = text.partition(": ")
    if sep and field and " " not in field:
        return (field,), reason
    return ("body",), text
