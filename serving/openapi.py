"""OpenAPI 3.0 description of the endpoint (served at ``GET /openapi.json``).

Limits (``maxItems``, ``maxLength``, ``x-limits``) and error responses are read from the
same constants and settings the server enforces (``serving.limits``, ``serving.errors``).
"""

from __future__ import annotations

import inspect
from dataclasses import asdict
from typing import Any

from runtime import errors as runtime_errors
from runtime.errors import ServiceError
from serving import errors as serving_errors
from serving.config import ServerSettings
from serving.contract import (
    DEFAULT_EMBEDDING_DTYPE,
    EMBEDDING_DTYPES,
    EXTRACT_DEFAULTS,
    MASK_FORMATS,
    MAX_CUSTOM_ATTRIBUTES_CHARS,
    OUTPUT_DEFAULTS,
    PROMPT_MODES,
    RESULT_FORMATS,
)
from serving.errors import http_status
from serving.limits import limits
from serving.sessions import MAX_SESSION_ID_CHARS

_NUMBER = {"type": "number"}
_POINT = {
    "type": "object",
    "required": ["x", "y"],
    "properties": {
        "x": {**_NUMBER, "description": "pixels from the left of the upright image"},
        "y": {**_NUMBER, "description": "pixels from the top of the upright image"},
        "label": {"type": "integer", "enum": [0, 1], "default": 1, "description": "1 hold, 0 not hold"},
    },
}
_OUTPUTS = {
    "type": "object",
    "properties": {
        "result_format": {"type": "string", "enum": list(RESULT_FORMATS), "default": OUTPUT_DEFAULTS.result_format},
        "mask_format": {"type": "string", "enum": list(MASK_FORMATS), "default": OUTPUT_DEFAULTS.mask_format,
                        "description": "png (8-bit), png1 (1-bit), rle (COCO compressed RLE in mask_rle), none"},
        "max_side": {"type": "integer", "minimum": 1, "description": "scale outputs so the longest side fits"},
        "per_click_masks": {"type": "boolean", "default": EXTRACT_DEFAULTS.per_click_masks},
        "png_level": {"type": "integer", "minimum": 0, "maximum": 9, "default": OUTPUT_DEFAULTS.png_level},
        "embedding": {"type": "boolean", "default": False,
                      "description": "add the image embedding to the answer (JSON: embedding; zip: embedding.json + "
                                     "embedding.bin, the raw little-endian array; image/png: 406); points may then "
                                     "be empty"},
        "embedding_dtype": {"type": "string", "enum": list(EMBEDDING_DTYPES), "default": DEFAULT_EMBEDDING_DTYPE,
                            "description": "a float32 embedding that the answer limit cannot carry is a 413 "
                                           "output_too_large"},
    },
}
_EMBEDDING = {
    "type": "object",
    "description": "the image embedding and what a decoder needs to use it; a point (x, y) in upright original "
                   "pixels is (x * scale_x, y * scale_y) in the input_frame (ResizeLongestSide.apply_coords)",
    "properties": {
        "model_id": {"type": "string", "description": "hex SHA-256 of '<model_type>:<encoder sha256 in the manifest>'"},
        "model_type": {"type": "string"},
        "dtype": {"type": "string", "enum": list(EMBEDDING_DTYPES)},
        "shape": {"type": "array", "items": {"type": "integer"}, "description": "e.g. [1, 256, 64, 64]"},
        "data_base64": {"type": "string", "format": "byte", "description": "the raw little-endian array, C order "
                        "(JSON answers; zip answers carry it as embedding.bin)"},
        "image_id": {"type": "string"},
        "original_size_hw": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "input_size_hw": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
        "input_frame": {"type": "integer", "description": "the decoder's coordinate frame (1024)"},
        "point_transform": {"type": "object", "properties": {"scale_x": _NUMBER, "scale_y": _NUMBER}},
    },
}
REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Send image_base64 (a new photo), or image_id (a photo sent before), or neither with a session id.",
    "properties": {
        "image_base64": {"type": "string", "format": "byte", "description": "the image file (JPEG, PNG, WebP, ...)"},
        "image_id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "from an earlier response"},
        "points": {"type": "array", "items": _POINT},
        "box": {"type": "array", "items": _NUMBER, "minItems": 4, "maxItems": 4, "description": "[x0, y0, x1, y1]"},
        "mode": {"type": "string", "enum": list(PROMPT_MODES), "default": EXTRACT_DEFAULTS.mode},
        "multimask": {"type": "boolean", "default": EXTRACT_DEFAULTS.multimask},
        "min_area": {"type": "integer", "minimum": 0, "default": EXTRACT_DEFAULTS.min_area, "description": "output pixels"},
        "close_session": {"type": "boolean", "default": False},
        "outputs": _OUTPUTS,
    },
}
_CLICK_RESULT = {
    "type": "object",
    "properties": {
        "points": {"type": "array", "items": {"type": "integer"}},
        "score": _NUMBER, "mask_token": {"type": "integer"}, "area": {"type": "integer", "description": "output pixels"},
        "kept": {"type": "boolean"},
        "bbox_xyxy": {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4, "nullable": True,
                      "description": "the mask's bounding box [x0, y0, x1, y1] in output pixels, x1/y1 one past the "
                                     "last column/row; null when the mask is empty"},
    },
}
_RLE = {
    "type": "object",
    "required": ["size", "counts"],
    "description": "COCO compressed RLE (column-major), readable by pycocotools.mask.decode",
    "properties": {"size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2,
                            "description": "[height, width]"},
                   "counts": {"type": "string"}},
}
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["result_image_base64", "mask_image_base64", "image_id"],
    "properties": {
        "result_image_base64": {"type": "string", "nullable": True, "description": "RGBA cut-out (alpha 255 holds, 25 elsewhere)"},
        "mask_image_base64": {"type": "string", "nullable": True, "description": "mask, 255 on holds"},
        "image_id": {"type": "string"},
        "cache_hit": {"type": "boolean"},
        "empty": {"type": "boolean", "description": "true when no hold pixel remains"},
        "width": {"type": "integer"}, "height": {"type": "integer"},
        "original_width": {"type": "integer"}, "original_height": {"type": "integer"},
        "clicks": {"type": "array", "items": _CLICK_RESULT},
        "timings_ms": {"type": "object", "additionalProperties": _NUMBER},
        "precision": {"type": "string", "description": "what the model ran in: f32, bf16 or int8 on CPU "
                      "(SAM_CPU_PRECISION), fp32 or fp16 on a GPU"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "per_click_masks_base64": {"type": "array", "items": {"type": "string"}},
        "mask_rle": {**_RLE, "nullable": True, "description": "the mask as COCO RLE (mask_format rle)"},
        "per_click_masks_rle": {"type": "array", "items": _RLE, "description": "per_click_masks with mask_format rle"},
        "embedding": _EMBEDDING,
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"}},
}
_HEADERS = [
    {"name": "X-Amzn-SageMaker-Session-Id", "in": "header", "required": False,
     "schema": {"type": "string", "maxLength": MAX_SESSION_ID_CHARS,
                "pattern": "^(NEW_SESSION|[a-zA-Z0-9](-*[a-zA-Z0-9])*)$"}},
    {"name": "X-Amzn-SageMaker-Custom-Attributes", "in": "header", "required": False,
     "schema": {"type": "string", "maxLength": MAX_CUSTOM_ATTRIBUTES_CHARS},
     "description": "for raw image bodies: points=x,y;x,y&labels=1,0&box=x0,y0,x1,y1&result_format=webp&mask_format=rle ..."},
]


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def error_responses() -> dict[str, dict[str, Any]]:
    """One response per status the error classes map to, described by the classes' codes and docstrings."""
    by_status: dict[int, list[str]] = {}
    for module in (runtime_errors, serving_errors):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ServiceError) and cls is not ServiceError:
                summary = (cls.__doc__ or "").strip().splitlines()[0].rstrip(".")
                by_status.setdefault(http_status(cls("")), []).append(f"{cls.code}: {summary}")
    return {str(status): _error("; ".join(sorted(set(texts)))) for status, texts in sorted(by_status.items())}


def _invocation(operation_id: str, settings: ServerSettings) -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    request = {**REQUEST_SCHEMA, "properties": {
        **REQUEST_SCHEMA["properties"],
        "points": {"type": "array", "items": _POINT, "maxItems": settings.runtime.max_clicks}}}
    return {
        "operationId": operation_id,
        "summary": "Extract climbing holds at the tapped points",
        "parameters": _HEADERS,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": request},
            "application/zip": binary, "image/jpeg": binary, "image/png": binary, "image/webp": binary,
        }},
        "responses": {
            "200": {"description": "holds extracted", "content": {
                "application/json": {"schema": RESPONSE_SCHEMA}, "application/zip": binary, "image/png": binary}},
            **error_responses(),
        },
    }


def openapi_schema(settings: ServerSettings | None = None) -> dict[str, Any]:
    """The OpenAPI document for a server running with ``settings`` (the defaults if None)."""
    settings = settings or ServerSettings()
    return {
        "openapi": "3.0.3",
        "info": {"title": "SAM climbing-hold extraction", "version": "1.0.0",
                 "x-limits": [asdict(limit) for limit in limits(settings)]},
        "paths": {
            "/invocations": {"post": _invocation("invoke", settings)},
            "/endpoints/{endpoint_name}/invocations": {"post": {
                **_invocation("invokeEndpoint", settings),
                "parameters": [{"name": "endpoint_name", "in": "path", "required": True, "schema": {"type": "string"}},
                               *_HEADERS]}},
            "/ping": {"get": {"operationId": "ping", "responses": {"200": {"description": "ready"},
                                                                  "503": _error("loading or draining")}}},
            "/execution-parameters": {"get": {
                "operationId": "executionParameters",
                "summary": "SageMaker Batch Transform's question: the container's preferred job settings",
                "responses": {"200": {"description": "preferred settings", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB"],
                    "properties": {"MaxConcurrentTransforms": {"type": "integer", "minimum": 1},
                                   "BatchStrategy": {"type": "string", "enum": ["SINGLE_RECORD"]},
                                   "MaxPayloadInMB": {"type": "integer", "minimum": 1, "maximum": 100}}}}}}}}},
            "/healthz": {"get": {"operationId": "healthz", "responses": {
                "200": {"description": "ready", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"status": {"type": "string"}}}}}},
                "503": {"description": "loading or draining"}}}},
        },
    }
