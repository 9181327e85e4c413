"""Schema-driven fuzzing of the HTTP API (schemathesis) against the real server: no 5xx."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from serving.openapi import openapi_schema

schema = schemathesis.openapi.from_dict(openapi_schema())


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, tiny_server) -> None:  # type: ignore[no-untyped-def]
    response = case.call(base_url=tiny_server.url, timeout=60)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()
        assert {"error", "message"} <= set(body), body
