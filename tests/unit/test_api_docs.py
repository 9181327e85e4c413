"""serving/api_docs.py: the HTML page shows every path, field and response of the schema, escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from serving.api_docs import render_openapi
from serving.openapi import openapi_schema


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


def _fields(schema: dict) -> set[str]:  # type: ignore[type-arg]
    names = set()
    for choice in schema.get("oneOf", []):
        names |= _fields(choice)
    for name, spec in schema.get("properties", {}).items():
        names.add(name)
        names |= _fields(spec)
        names |= _fields(spec.get("items", {}))
    return names


def test_every_operation_field_and_response_is_on_the_page() -> None:
    schema = openapi_schema()
    page = render_openapi(schema)
    text = " ".join(" ".join(_parse(page).text).split())
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            assert f"{method.upper()} {path}" in text
            for status, response in operation["responses"].items():
                assert f"{status} {response['description']}" in text
            for parameter in operation.get("parameters", []):
                assert parameter["name"] in text
    invocation = schema["paths"]["/invocations"]["post"]
    for media, content in invocation["requestBody"]["content"].items():
        assert media in text
        for name in _fields(content["schema"]):
            assert re.search(rf"\b{re.escape(name)}\b", text), name
    answers = _fields(invocation["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"result_image_base64", "outcome", "stored_bytes"} <= answers  # both answers: holds, and a warm report
    for name in answers:
        assert name in text, name
    assert "maxItems 64" in text and "enum png | webp | none" in text  # constraints shown


def test_schema_text_is_escaped_and_the_page_loads_nothing_from_elsewhere() -> None:
    schema = {"openapi": "3.0.3", "info": {"title": "<script>alert(1)</script>", "version": "1"},
              "paths": {"/x": {"get": {"summary": "<b>bold</b>", "responses": {"200": {"description": "&ok"}}}}}}
    page = render_openapi(schema)
    parsed = _parse(page)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert "<script>alert(1)</script>" in " ".join(parsed.text)
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
