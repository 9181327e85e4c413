"""Request contracts: JSON, zip and raw image bodies -> one ``ParsedRequest``. Pure functions.

JSON (``application/json``), the old contract plus compatible extensions::

    {"image_base64": "...", "points": [{"x": 10, "y": 20, "label": 1}],
     "image_id": "...", "box": [x0, y0, x1, y1], "mode": "per_click" | "single",
     "multimask": false, "min_area": 0, "close_session": false,
     "outputs": {"result_format": "png" | "webp" | "none", "mask_format": "png" | "png1" | "rle" | "none",
                 "max_side": 2048, "per_click_masks": false, "png_level": 1,
                 "embedding": false, "embedding_dtype": "float16" | "float32"}}

``outputs.embedding: true`` adds the image embedding to the answer (``serving.embeddings``); the
request may then carry no points at all (nothing is decoded).

Zip (``application/zip``): ``image.bin`` (the image file) and ``points.json`` (the JSON
object above without ``image_base64``). Raw images (``image/jpeg``, ``image/png``,
``image/webp``): the body is the image file; points and options travel in
``X-Amzn-SageMaker-Custom-Attributes`` as ``key=value`` pairs joined by ``&``, e.g.
``points=120,340;560.5,80&labels=1,0&result_format=webp``.

Unknown JSON fields are ignored (old clients keep working) and reported as warnings.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import lzma
import math
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import parse_qsl

from runtime.errors import BadRequest, InvalidPoints, PayloadTooLarge
from runtime.holds import Click, ExtractOptions, PromptMode
from runtime.outputs import EmbeddingDtype, MaskFormat, OutputOptions, ResultFormat
from serving.errors import UnsupportedMediaType

JSON = "application/json"
ZIP = "application/zip"
RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
CONTENT_TYPES = (JSON, ZIP, *RAW_IMAGE_TYPES)

KNOWN_FIELDS = frozenset({"image_base64", "image_id", "points", "box", "mode", "multimask", "min_area",
                          "close_session", "outputs"})
OUTPUT_FIELDS = frozenset({"result_format", "mask_format", "max_side", "per_click_masks", "png_level", "embedding",
                           "embedding_dtype"})
ATTRIBUTE_KEYS = frozenset({"points", "labels", "box", "mode", "multimask", "min_area", "close_session", "image_id",
                            "result_format", "mask_format", "max_side", "per_click_masks", "png_level", "embedding",
                            "embedding_dtype"})
#: SageMaker's own limit on X-Amzn-SageMaker-Custom-Attributes (botocore: max 1024, ASCII).
MAX_CUSTOM_ATTRIBUTES_CHARS = 1024
#: key=value pairs in the custom attributes (there are 15 keys).
MAX_CUSTOM_ATTRIBUTE_FIELDS = 32
#: The largest integer option (min_area, max_side): far beyond any image, and within int64,
#: which the post-processing graph takes.
MAX_INTEGER = 1 << 40
#: points.json inside a zip request.
MAX_POINTS_JSON_BYTES = 1 << 20
_IMAGE_ID = re.compile(r"[0-9a-f]{32}")
#: Numbers in custom attributes: ASCII digits only (Python's float() also takes "1_0" and Arabic-Indic digits).
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
#: ``rle``: COCO compressed RLE in the JSON answer (and in the zip's metadata.json).
MASK_FORMATS: tuple[MaskFormat, ...] = get_args(MaskFormat)
RESULT_FORMATS: tuple[ResultFormat, ...] = get_args(ResultFormat)
PROMPT_MODES: tuple[PromptMode, ...] = get_args(PromptMode)
EMBEDDING_DTYPES: tuple[EmbeddingDtype, ...] = get_args(EmbeddingDtype)
#: ``outputs.embedding_dtype`` when not given: 2 MiB for 1x256x64x64, within every contract's answer limit.
DEFAULT_EMBEDDING_DTYPE: EmbeddingDtype = "float16"
#: The request options' defaults (the parsers and the OpenAPI document read them).
OUTPUT_DEFAULTS, EXTRACT_DEFAULTS = OutputOptions(), ExtractOptions()
_DATA_URL = re.compile(r"^data:[\w/+.-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedRequest:
    """A decoded invocation, before sessions are resolved.

    ``image_bytes`` / ``image_id`` may both be None when a session supplies the image.
    ``default_accept``: the response type when the client states none.
    """

    clicks: tuple[Click, ...]
    image_bytes: bytes | None
    image_id: str | None
    box_xyxy: tuple[float, float, float, float] | None
    options: ExtractOptions
    outputs: OutputOptions
    close_session: bool
    default_accept: str
    warnings: tuple[str, ...] = ()


def media_type(content_type: str | None) -> str:
    """'application/json; charset=utf-8' -> 'application/json' (lower case, no parameters)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_request(body: bytes | str, content_type: str | None, custom_attributes: str | None = None,
                  max_zip_entries: int = 16, max_zip_member_bytes: int = 64 << 20) -> ParsedRequest:
    """Dispatch on the media type; raise ``UnsupportedMediaType`` for anything else."""
    kind = media_type(content_type)
    if kind == JSON:
        return parse_json(body)
    if kind == ZIP:
        return parse_zip(_as_bytes(body), max_zip_entries, max_zip_member_bytes)
    if kind in RAW_IMAGE_TYPES:
        return parse_raw_image(_as_bytes(body), custom_attributes)
    raise UnsupportedMediaType(
        f"Content-Type {content_type!r} is not supported; use one of {', '.join(CONTENT_TYPES)}"
    )


def parse_json(body: bytes | str) -> ParsedRequest:
    """The JSON contract (see the module docstring)."""
    document = load_json_object(body, "request body")
    image_bytes = None
    if document.get("image_base64") is not None:
        image_bytes = decode_base64(document["image_base64"], "image_base64")
    return _from_document(document, image_bytes, default_accept=JSON)


def parse_zip(body: bytes, max_entries: int, max_member_bytes: int) -> ParsedRequest:
    """The zip contract: ``image.bin`` + ``points.json``, bounded against zip bombs."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = archive.infolist()
    except NotImplementedError as exc:  # e.g. a "version needed to extract" zipfile does not know
        raise BadRequest(f"the zip archive uses a feature that is not supported: {exc}") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise BadRequest(f"the body is not a valid zip archive: {exc}") from exc
    if len(members) > max_entries:
        raise PayloadTooLarge(f"the zip archive has {len(members)} entries; at most {max_entries} are allowed")
    names = {member.filename for member in members}
    missing = [name for name in ("image.bin", "points.json") if name not in names]
    if missing:
        raise BadRequest(f"the zip archive lacks {' and '.join(missing)} (it must hold image.bin and points.json)")
    image = _read_member(archive, "image.bin", max_member_bytes)
    points = _read_member(archive, "points.json", MAX_POINTS_JSON_BYTES)
    document = load_json_object(points, "points.json")
    if "image_base64" in document:
        raise BadRequest("points.json must not carry image_base64: the image is image.bin")
    return _from_document(document, image, default_accept=ZIP)


def parse_raw_image(body: bytes, custom_attributes: str | None) -> ParsedRequest:
    """A raw image body with points and options in the custom attributes."""
    if not body:
        raise BadRequest("the request body is empty: send the image file")
    attributes = parse_custom_attributes(custom_attributes)
    if "image_id" in attributes:
        raise BadRequest("a raw image request carries its image: image_id is not allowed here")
    document: dict[str, Any] = {}
    clicks = _attribute_points(attributes)
    document["points"] = [{"x": x, "y": y, "label": label} for x, y, label in clicks]
    if "box" in attributes:
        document["box"] = _numbers(attributes["box"], "box")
    if "mode" in attributes:
        document["mode"] = attributes["mode"]
    for key in ("multimask", "close_session"):
        if key in attributes:
            document[key] = _attribute_bool(attributes[key], key)
    if "min_area" in attributes:
        document["min_area"] = _attribute_int(attributes["min_area"], "min_area")
    outputs: dict[str, Any] = {}
    for key in ("result_format", "mask_format", "embedding_dtype"):
        if key in attributes:
            outputs[key] = attributes[key]
    for key in ("max_side", "png_level"):
        if key in attributes:
            outputs[key] = _attribute_int(attributes[key], key)
    for key in ("per_click_masks", "embedding"):
        if key in attributes:
            outputs[key] = _attribute_bool(attributes[key], key)
    if outputs:
        document["outputs"] = outputs
    return _from_document(document, body, default_accept=JSON)


def parse_custom_attributes(text: str | None) -> dict[str, str]:
    """``key=value&key=value`` -> dict; unknown or repeated keys are errors."""
    if not text:
        return {}
    if len(text) > MAX_CUSTOM_ATTRIBUTES_CHARS:
        raise BadRequest(f"X-Amzn-SageMaker-Custom-Attributes is longer than {MAX_CUSTOM_ATTRIBUTES_CHARS} characters "
                         "(SageMaker's limit); send many points as a JSON or zip request")
    if not text.isascii():
        raise BadRequest("X-Amzn-SageMaker-Custom-Attributes must be ASCII (SageMaker's rule)")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_CUSTOM_ATTRIBUTE_FIELDS)
    except ValueError as exc:
        raise BadRequest(f"X-Amzn-SageMaker-Custom-Attributes is not key=value&key=value: {exc}") from exc
    result: dict[str, str] = {}
    for key, value in pairs:
        if key not in ATTRIBUTE_KEYS:
            raise BadRequest(f"unknown custom attribute {key!r}; known: {', '.join(sorted(ATTRIBUTE_KEYS))}")
        if key in result:
            raise BadRequest(f"custom attribute {key!r} is given twice")
        result[key] = value
    return result


def load_json_object(body: bytes | str, what: str) -> dict[str, Any]:
    """Strict JSON: UTF-8, no NaN/Infinity, bounded nesting, an object at the top."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"{what} is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    if not body.strip():
        raise BadRequest(f"{what} is empty")
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BadRequest(f"{what} is nested too deeply") from exc
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadRequest(f"{what} must be a JSON object, not {type(document).__name__}")
    return document


def decode_base64(value: Any, field: str) -> bytes:
    """Standard base64 (an optional ``data:...;base64,`` prefix and whitespace are allowed)."""
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a base64 string, not {_type_name(value)}")
    text = _DATA_URL.sub("", value.strip(), count=1)
    text = "".join(text.split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{field} is not valid base64: {exc}") from exc
    if not data:
        raise BadRequest(f"{field} is empty")
    return data


def _from_document(document: Mapping[str, Any], image_bytes: bytes | None, default_accept: str) -> ParsedRequest:
    warnings = tuple(f"unknown field {key!r} ignored" for key in sorted(set(document) - KNOWN_FIELDS))
    image_id = document.get("image_id")
    if image_id is not None:
        if not isinstance(image_id, str) or not _IMAGE_ID.fullmatch(image_id):
            raise BadRequest("image_id must be the 32 lowercase hex characters returned by an earlier response")
        if image_bytes is not None:
            raise BadRequest("send either image_base64 or image_id, not both")
    points = document.get("points", [])
    if not isinstance(points, list):
        raise InvalidPoints(f"points must be a list of {{\"x\": .., \"y\": ..}} objects, not {_type_name(points)}")
    clicks = tuple(_click(item, index) for index, item in enumerate(points))
    box = document.get("box")
    box_xyxy = None
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise InvalidPoints("box must be a list of four numbers [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (_number(v, f"box[{i}]") for i, v in enumerate(box))
        box_xyxy = (x0, y0, x1, y1)
    mode = document.get("mode", EXTRACT_DEFAULTS.mode)
    if mode not in PROMPT_MODES:
        raise BadRequest(f"mode must be one of {', '.join(PROMPT_MODES)}, not {mode!r}")
    outputs_doc = document.get("outputs", {})
    if not isinstance(outputs_doc, dict):
        raise BadRequest(f"outputs must be an object, not {_type_name(outputs_doc)}")
    warnings += tuple(f"unknown field 'outputs.{key}' ignored" for key in sorted(set(outputs_doc) - OUTPUT_FIELDS))
    max_side = outputs_doc.get("max_side")
    if max_side is not None:
        max_side = _integer(max_side, "outputs.max_side", minimum=1)
    options = ExtractOptions(
        mode=mode,
        multimask=_boolean(document.get("multimask", EXTRACT_DEFAULTS.multimask), "multimask"),
        min_area=_integer(document.get("min_area", EXTRACT_DEFAULTS.min_area), "min_area", minimum=0),
        max_output_side=max_side,
        per_click_masks=_boolean(outputs_doc.get("per_click_masks", EXTRACT_DEFAULTS.per_click_masks), "outputs.per_click_masks"),
    )
    result_format = outputs_doc.get("result_format", OUTPUT_DEFAULTS.result_format)
    mask_format = outputs_doc.get("mask_format", OUTPUT_DEFAULTS.mask_format)
    if result_format not in RESULT_FORMATS:
        raise BadRequest(f"outputs.result_format must be one of {', '.join(RESULT_FORMATS)}, not {result_format!r}")
    if mask_format not in MASK_FORMATS:
        raise BadRequest(f"outputs.mask_format must be one of {', '.join(MASK_FORMATS)}, not {mask_format!r}")
    png_level = _integer(outputs_doc.get("png_level", OUTPUT_DEFAULTS.png_level), "outputs.png_level", minimum=0)
    if png_level > 9:
        raise BadRequest("outputs.png_level must be within 0..9")
    outputs = OutputOptions(result_format=result_format, mask_format=mask_format, png_level=png_level,
                            embedding_dtype=_embedding_dtype(outputs_doc))
    return ParsedRequest(clicks, image_bytes, image_id, box_xyxy, options, outputs,
                         _boolean(document.get("close_session", False), "close_session"), default_accept, warnings)


def _embedding_dtype(outputs_doc: Mapping[str, Any]) -> EmbeddingDtype | None:
    """The embedding's dtype in the answer (``outputs.embedding``/``embedding_dtype``), None when not asked."""
    dtype = outputs_doc.get("embedding_dtype", DEFAULT_EMBEDDING_DTYPE)
    if dtype not in EMBEDDING_DTYPES:
        raise BadRequest(f"outputs.embedding_dtype must be one of {', '.join(EMBEDDING_DTYPES)}, not {dtype!r}")
    return dtype if _boolean(outputs_doc.get("embedding", False), "outputs.embedding") else None


def _click(item: Any, index: int) -> Click:
    if not isinstance(item, dict):
        raise InvalidPoints(f"points[{index}] must be an object {{\"x\": .., \"y\": ..}}, not {_type_name(item)}")
    if "x" not in item or "y" not in item:
        raise InvalidPoints(f"points[{index}] needs both x and y")
    label = item.get("label", 1)
    if isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1):
        raise InvalidPoints(f"points[{index}].label must be 1 (hold) or 0 (not hold), not {label!r}")
    return Click(_number(item["x"], f"points[{index}].x", InvalidPoints),
                 _number(item["y"], f"points[{index}].y", InvalidPoints), label)


def _number(value: Any, field: str, error: type[BadRequest] = InvalidPoints) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{field} must be a number, not {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError as exc:  # an integer of 309+ digits
        raise error(f"{field} is far too large to be a coordinate") from exc
    if not math.isfinite(number):
        raise error(f"{field} must be finite")
    return number


def _integer(value: Any, field: str, minimum: int, maximum: int = MAX_INTEGER) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{field} must be an integer, not {_type_name(value)}")
    if value < minimum:
        raise BadRequest(f"{field} must be >= {minimum}")
    if value > maximum:
        raise BadRequest(f"{field} must be <= {maximum}")
    return value


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be true or false, not {_type_name(value)}")
    return value


def _attribute_points(attributes: Mapping[str, str]) -> list[tuple[float, float, int]]:
    text = attributes.get("points", "")
    pairs = [p for p in text.split(";") if p.strip()] if text else []
    points = []
    for index, pair in enumerate(pairs):
        values = _numbers(pair, f"points[{index}]")
        if len(values) != 2:
            raise InvalidPoints(f"custom attribute points[{index}] must be 'x,y', got {pair!r}")
        points.append((values[0], values[1]))
    labels = [1] * len(points)
    if "labels" in attributes:
        parts = [p.strip() for p in attributes["labels"].split(",")]
        if len(parts) != len(points) or any(p not in ("0", "1") for p in parts):
            raise InvalidPoints(f"custom attribute labels must give 0 or 1 for each of the {len(points)} points")
        labels = [int(p) for p in parts]
    return [(x, y, label) for (x, y), label in zip(points, labels)]


def _numbers(text: str, field: str) -> list[float]:
    parts = [part.strip() for part in text.split(",")]
    if not all(_DECIMAL.fullmatch(part) for part in parts):
        raise InvalidPoints(f"custom attribute {field} must be comma-separated decimal numbers "
                            f"(ASCII digits), got {text[:80]!r}")
    values = [float(part) for part in parts]
    if not all(math.isfinite(v) for v in values):
        raise InvalidPoints(f"custom attribute {field} must be finite numbers")
    return values


def _attribute_bool(text: str, key: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise BadRequest(f"custom attribute {key} must be true or false, not {text!r}")
    return lowered in ("true", "1")


def _attribute_int(text: str, key: str) -> int:
    if not _INTEGER.fullmatch(text.strip()):
        raise BadRequest(f"custom attribute {key} must be an integer (ASCII digits), not {text[:80]!r}")
    return int(text)


def _read_member(archive: zipfile.ZipFile, name: str, limit: int) -> bytes:
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise BadRequest(f"zip member {name} is encrypted; send it unencrypted")
    if info.file_size > limit:
        raise PayloadTooLarge(f"zip member {name} declares {info.file_size} bytes; the limit is {limit}")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError, ValueError, zlib.error,
            lzma.LZMAError) as exc:
        raise BadRequest(f"zip member {name} cannot be read (corrupt or unsupported compression): {exc}") from exc
    if len(data) > limit:
        raise PayloadTooLarge(f"zip member {name} expands beyond {limit} bytes")
    return data


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__)
