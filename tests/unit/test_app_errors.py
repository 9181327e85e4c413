"""Our own faults become a generic 500 with a request id, logged with the traceback, never sent."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from serving.app import ServerState, create_app
from serving.config import ServerSettings


class ExplodingService:
    """A service whose prediction fails with an unexpected (non-client) error: fault injection."""

    def predict(self, invocation):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internal detail")


def _call(state: ServerState, method: str, path: str, body: bytes = b"") -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(ServerSettings(), state))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    return asyncio.run(run())


def test_internal_error_is_a_500_with_request_id(caplog: pytest.LogCaptureFixture) -> None:
    state = ServerState()
    state.service = ExplodingService()  # type: ignore[assignment]
    state.ready.set()
    with caplog.at_level(logging.ERROR):
        response = _call(state, "POST", "/invocations", b'{"image_id": "' + b"0" * 32 + b'", "points": []}')
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error" and body["request_id"] == response.headers["x-request-id"]
    assert "secret internal detail" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert logged and logged[0].exc_info and "secret internal detail" in str(logged[0].exc_info[1])
    assert getattr(logged[0], "request_id", None) == body["request_id"]


def test_not_ready_answers_503() -> None:
    state = ServerState()
    assert _call(state, "GET", "/ping").status_code == 503
    assert _call(state, "GET", "/healthz").json() == {"status": "loading"}
    assert _call(state, "POST", "/invocations", b"{}").status_code == 503
