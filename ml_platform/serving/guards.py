"""Guards in front of the prediction API: bearer-token auth, request size limit, and the
answer given while the online store is down.

``GuardMiddleware`` is plain ASGI (no framework import), added to the BentoML service with
``FraudDetector.add_asgi_middleware``. It runs before any parsing, so an unauthenticated or
oversized request costs almost nothing. Health and metrics paths stay open so probes and
Prometheus work without the token.

Online store outage: the request path catches :data:`STORE_ERRORS` and answers
:func:`store_unavailable_response` (503 + ``Retry-After``) instead of a 500 or a hang;
redis-py reconnects on the next request, so the API recovers by itself when Redis is back.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Paths reachable without the token: probes and metrics scraping.
OPEN_PATHS: frozenset[str] = frozenset({"/readyz", "/livez", "/healthz", "/metrics"})
RETRY_AFTER_SECONDS = 2


def _store_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.OperationalError, ConnectionError, TimeoutError]
    try:
        import redis

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a locked dependency
        pass
    return tuple(errors)


#: Exceptions meaning "the online store cannot be reached right now" (not bad input).
STORE_ERRORS: tuple[type[BaseException], ...] = _store_errors()


def store_unavailable_response(exc: BaseException) -> Any:
    """503 naming the cause; clients retry after ``Retry-After`` seconds."""
    from fastapi.responses import JSONResponse

    return JSONResponse(
        {
            "error": "online feature store unavailable: "
            f"{type(exc).__name__}: {str(exc)[:200]}; retry shortly",
            "retry_after_seconds": RETRY_AFTER_SECONDS,
        },
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class GuardMiddleware:
    """Optional bearer-token check (401) and request body limit (413) for every HTTP call."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        token: str | None = None,
        max_body_bytes: int = 1_048_576,
        open_paths: Iterable[str] = OPEN_PATHS,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes: must be >= 1, got {max_body_bytes}")
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.expected is not None and scope.get("path") not in self.open_paths:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _reply(
                    send,
                    401,
                    "authorization: missing or invalid bearer token",
                    [(b"www-authenticate", b'Bearer realm="ml-platform"')],
                )
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                await _reply(send, 400, f"content-length: not an integer ({length[:20]!r})")
                return
            if size > self.max_body_bytes:
                await _reply(send, 413, self._too_large(size))
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read at most the limit, then replay it to the app.
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                buffered = message
                break
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.max_body_bytes:
                await _reply(send, 413, self._too_large(total, at_least=True))
                return
            if not message.get("more_body", False):
                buffered = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return buffered
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int, at_least: bool = False) -> str:
        return (
            f"body: {'more than ' if at_least else ''}{size} bytes exceeds the limit of "
            f"{self.max_body_bytes} (ML_PLATFORM_API_MAX_BODY_BYTES)"
        )


async def _reply(
    send: Send, status: int, error: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


def install(service: Any, settings: Any) -> None:
    """Add the guard to a BentoML service from the settings (token optional)."""
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    service.add_asgi_middleware(
        GuardMiddleware, token=token, max_body_bytes=settings.api_max_body_bytes
    )
