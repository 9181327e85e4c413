"""The README's limits table and the OpenAPI document say what the code enforces."""

from __future__ import annotations

from pathlib import Path

from serving.config import ServerSettings
from serving.contract import MAX_CUSTOM_ATTRIBUTES_CHARS
from serving.errors import HTTP_STATUS
from serving.limits import README_END, README_START, limits, markdown_table
from serving.openapi import openapi_schema

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_generated_one() -> None:
    text = README.read_text()
    block = text[text.index(README_START) + len(README_START):text.index(README_END)].strip()
    assert block == markdown_table(limits(ServerSettings())), "run: python -m serving.limits, paste into README.md"


def test_limits_follow_the_settings() -> None:
    settings = ServerSettings.from_env({"SAM_MAX_BODY_BYTES": "8MiB", "SAM_MAX_CLICKS": "12", "SAM_WORKER_THREADS": "3",
                                        "SAM_MAX_QUEUED_REQUESTS": "5", "SAM_BODY_TIMEOUT_S": "7"})
    by_setting = {row.setting: row.value for row in limits(settings)}
    assert by_setting["SAM_MAX_BODY_BYTES"] == "8 MiB" and by_setting["SAM_MAX_CLICKS"] == "12"
    assert by_setting["SAM_WORKER_THREADS + SAM_MAX_QUEUED_REQUESTS"] == "8" and by_setting["SAM_BODY_TIMEOUT_S"] == "7 s"
    schema = openapi_schema(settings)
    request = schema["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert request["properties"]["points"]["maxItems"] == 12
    assert schema["info"]["x-limits"][0] == {"what": "request body", "value": "8 MiB", "setting": "SAM_MAX_BODY_BYTES",
                                             "beyond": "413 payload_too_large"}


def test_openapi_lists_every_error_status_and_the_header_limits() -> None:
    operation = openapi_schema()["paths"]["/invocations"]["post"]
    assert {str(status) for status in HTTP_STATUS.values()} <= set(operation["responses"])
    attributes = next(p for p in operation["parameters"] if p["name"] == "X-Amzn-SageMaker-Custom-Attributes")
    assert attributes["schema"]["maxLength"] == MAX_CUSTOM_ATTRIBUTES_CHARS == 1024
