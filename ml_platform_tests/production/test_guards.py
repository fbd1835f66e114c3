"""The API guard middleware in process (fast): bearer token, body limit, open probe paths.

The same middleware runs in the real service in test_reliability.py; these tests cover
the edge cases cheaply (no server start).
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ml_platform.serving.guards import GuardMiddleware, store_unavailable_response

pytestmark = pytest.mark.production


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"bytes": len(body)})


def _client(**options) -> TestClient:
    app = Starlette(
        routes=[
            Route("/predict", _echo, methods=["POST"]),
            Route("/readyz", _echo, methods=["GET"]),
        ]
    )
    return TestClient(GuardMiddleware(app, **options))


def test_no_token_configured_means_open_api():
    client = _client(token=None, max_body_bytes=1024)
    assert client.post("/predict", content=b"x" * 10).json() == {"bytes": 10}


def test_bearer_token_required_except_probes():
    client = _client(token="s3cret-token", max_body_bytes=1024)
    assert client.post("/predict", content=b"{}").status_code == 401
    r = client.post("/predict", content=b"{}", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert r.json() == {"error": "authorization: missing or invalid bearer token"}
    ok = client.post("/predict", content=b"{}", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    assert client.get("/readyz").status_code == 200


def test_body_limit_with_and_without_content_length():
    client = _client(token=None, max_body_bytes=1024)
    assert client.post("/predict", content=b"x" * 1024).json() == {"bytes": 1024}
    r = client.post("/predict", content=b"x" * 1025)
    assert r.status_code == 413 and "1025 bytes exceeds the limit of 1024" in r.json()["error"]

    def stream(n: int):
        for _ in range(n):
            yield b"x" * 100

    assert client.post("/predict", content=stream(10)).json() == {"bytes": 1000}
    r = client.post("/predict", content=stream(11))
    assert r.status_code == 413 and "more than" in r.json()["error"]
    bad = client.post("/predict", content=b"{}", headers={"content-length": "abc"})
    assert bad.status_code == 400


def test_invalid_limit_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="max_body_bytes"):
        GuardMiddleware(lambda *a: None, max_body_bytes=0)


def test_store_outage_answer_is_503_with_retry_after():
    import redis

    r = store_unavailable_response(redis.exceptions.ConnectionError("Connection refused"))
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert b"online feature store unavailable" in r.body
