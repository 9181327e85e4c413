"""The OpenAPI document as an HTML page (served at ``GET /docs``). A pure function of the schema.

Hand-written rather than a vendored Swagger UI or Redoc: those are 1-1.5 MB of third-party
JavaScript in every image for a schema of four paths, and a page rendered on the server from
the same ``openapi_schema()`` object cannot drift from ``/openapi.json``. It renders the
subset of OpenAPI 3.0 the schema uses: paths, operations, parameters, request bodies per
media type, responses, and nested object/array schemas with their constraints.
"""

from __future__ import annotations

from html import escape
from typing import Any

#: Schema keywords shown as constraints beside a field's type, in this order.
_CONSTRAINTS = ("enum", "default", "minimum", "maximum", "minItems", "maxItems", "maxLength", "pattern", "format",
                "nullable")


def render_openapi(schema: dict[str, Any]) -> str:
    """The whole page: a table of contents, then every operation with its parameters, bodies and responses."""
    info = schema.get("info", {})
    title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
    operations = [(path, method.upper(), operation) for path, methods in schema.get("paths", {}).items()
                  for method, operation in methods.items()]
    toc = "".join(f'<li><a href="#{_anchor(op, path, method)}"><span class="method">{method}</span> '
                  f"<code>{escape(path)}</code></a> {escape(op.get('summary', ''))}</li>"
                  for path, method, op in operations)
    sections = "".join(_operation(path, method, op) for path, method, op in operations)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} · API</title>\n"
        '<link rel="icon" href="data:,">\n<link rel="stylesheet" href="/static/docs.css">\n</head>\n<body>\n'
        f"<header><h1>{escape(title)}</h1>\n"
        f"<p>OpenAPI {escape(str(schema.get('openapi', '')))} document: <a href=\"/openapi.json\">/openapi.json</a>"
        ' · try it: <a href="/playground">/playground</a></p></header>\n'
        f'<main>\n<nav><h2>Operations</h2><ul>{toc}</ul></nav>\n{sections}</main>\n</body>\n</html>\n'
    )


def _anchor(operation: dict[str, Any], path: str, method: str) -> str:
    return escape(operation.get("operationId") or f"{method}-{path}".strip("/").replace("/", "-"))


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    parts = [f'<section class="operation" id="{_anchor(operation, path, method)}">',
             f'<h2><span class="method">{method}</span> <code>{escape(path)}</code></h2>']
    if operation.get("summary"):
        parts.append(f"<p>{escape(operation['summary'])}</p>")
    parameters = operation.get("parameters", [])
    if parameters:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code>{' <em>required</em>' if p.get('required') else ''}</td>"
            f"<td>{escape(p.get('in', ''))}</td><td>{_type(p.get('schema', {}))}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>" for p in parameters)
        parts.append("<h3>Parameters</h3><table class=\"params\"><thead><tr><th>name</th><th>in</th><th>schema</th>"
                     f"<th>description</th></tr></thead><tbody>{rows}</tbody></table>")
    body = operation.get("requestBody")
    if body:
        parts.append(f"<h3>Request body{' (required)' if body.get('required') else ''}</h3>")
        parts.extend(_content(body.get("content", {})))
    parts.append("<h3>Responses</h3>")
    for status, response in operation.get("responses", {}).items():
        parts.append(f'<div class="response"><h4><span class="status s{escape(status[:1])}">{escape(status)}</span> '
                     f"{escape(response.get('description', ''))}</h4>")
        parts.extend(_content(response.get("content", {})))
        parts.append("</div>")
    parts.append("</section>\n")
    return "".join(parts)


def _content(content: dict[str, Any]) -> list[str]:
    """One block per media type: the schema of JSON bodies, the type of the others."""
    blocks = []
    for media, spec in content.items():
        schema = spec.get("schema", {})
        if "oneOf" in schema:  # one of several answers: each its own table
            detail = " <em>or</em> ".join(_schema(choice) for choice in schema["oneOf"])
        else:
            detail = _schema(schema) if schema.get("type") == "object" else _type(schema)
        blocks.append(f'<div class="media"><code>{escape(media)}</code> {detail}</div>')
    return blocks


def _schema(schema: dict[str, Any]) -> str:
    """An object schema as a table of its properties (nested objects and arrays of objects inline)."""
    parts = []
    if schema.get("description"):
        parts.append(f'<p class="description">{escape(schema["description"])}</p>')
    properties = schema.get("properties", {})
    if not properties:
        return "".join(parts) + _type(schema)
    required = set(schema.get("required", []))
    rows = []
    for name, spec in properties.items():
        nested = ""
        if spec.get("type") == "object" and spec.get("properties"):
            nested = _schema(spec)
        elif spec.get("type") == "array" and spec.get("items", {}).get("properties"):
            nested = _schema(spec["items"])
        rows.append(f"<tr><td><code>{escape(name)}</code>{' <em>required</em>' if name in required else ''}</td>"
                    f"<td>{_type(spec)}</td><td>{escape(spec.get('description', ''))}{nested}</td></tr>")
    parts.append("<table class=\"schema\"><thead><tr><th>field</th><th>type</th><th>description</th></tr></thead>"
                 f"<tbody>{''.join(rows)}</tbody></table>")
    return "".join(parts)


def _type(schema: dict[str, Any]) -> str:
    """'integer (minimum 0, default 1)', 'array of object (maxItems 64)', ..."""
    kind = schema.get("type", "any")
    if kind == "array":
        kind = f"array of {_type(schema.get('items', {}))}"
    elif kind == "object" and "additionalProperties" in schema:
        kind = f"object of {_type(schema['additionalProperties'])}"
    else:
        kind = escape(str(kind))
    constraints = [f"{key} {escape(_value(schema[key]))}" for key in _CONSTRAINTS if key in schema]
    return kind + (f' <span class="constraints">({", ".join(constraints)})</span>' if constraints else "")


def _value(value: Any) -> str:
    if isinstance(value, list):
        return " | ".join(str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
