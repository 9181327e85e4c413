"""An embedding a request brings instead of a photo (``"embedding": {...}``): parsed, checked, decoded.

The object is the one ``outputs.embedding`` returns (``serving.embeddings``): JSON requests carry
``data_base64``; zip requests carry the object without it as ``embedding.json`` and the raw array as
``embedding.bin``. Required: ``model_id``, ``dtype``, ``shape``, ``original_size_hw`` and the data;
``input_size_hw``, ``input_frame`` and ``point_transform``, which follow from those, are checked when
given; ``image_id``, ``model_type`` and ``encoder_variant`` are informational. Each problem is a 400:
``embedding_model_mismatch`` (naming both ids) or ``invalid_embedding``. The data's length is checked
before it is decoded. Nothing here writes to a cache: a brought embedding never gets an ``image_id``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import EmbeddingModelMismatch, InvalidEmbedding
from runtime.holds import GivenEmbedding
from runtime.image_files import ImageLimits
from runtime.manifest import Manifest
from runtime.outputs import EMBEDDING_DTYPES, EmbeddingDtype
from runtime.sam_preprocessing import point_scales_xy, resized_size_hw
from serving.embeddings import embedding_bytes, model_id

#: The fields of a brought embedding object (anything else is ignored with a warning).
EMBEDDING_FIELDS = frozenset({"model_id", "model_type", "encoder_variant", "dtype", "shape", "image_id",
                              "original_size_hw", "input_size_hw", "input_frame", "point_transform", "data_base64"})
#: ``point_transform`` scales may differ from the server's by this relative amount (a client that prints
#: fewer digits than Python's round-trip repr); beyond it the object describes another resize.
POINT_TRANSFORM_REL_TOL = 1e-9
#: At most this many dimensions in ``shape`` (the embedding has 4).
MAX_SHAPE_DIMS = 8


@dataclass(frozen=True)
class EmbeddingWire:
    """A brought ``embedding`` object, type-checked but not yet checked against the model.

    ``data``: ``data_base64``'s text (JSON, not decoded yet) or ``embedding.bin``'s raw bytes (zip).
    ``point_transform_xy``: (scale_x, scale_y) when given.
    """

    model_id: str
    dtype: EmbeddingDtype
    shape: tuple[int, ...]
    original_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int] | None
    input_frame: int | None
    point_transform_xy: tuple[float, float] | None
    data: str | bytes


def parse_embedding_object(document: Any, raw_data: bytes | None = None) -> tuple[EmbeddingWire, tuple[str, ...]]:
    """The request's ``embedding`` object (``raw_data``: a zip's ``embedding.bin``) -> (wire, warnings)."""
    if not isinstance(document, dict):
        raise InvalidEmbedding("embedding must be the object an outputs.embedding answer returned")
    warnings = tuple(f"unknown field 'embedding.{key}' ignored" for key in sorted(set(document) - EMBEDDING_FIELDS))
    missing = [key for key in ("model_id", "dtype", "shape", "original_size_hw") if key not in document]
    if raw_data is None and "data_base64" not in document:
        missing.append("data_base64")
    if missing:
        raise InvalidEmbedding(f"embedding lacks {', '.join(missing)}")
    if raw_data is not None and "data_base64" in document:
        raise InvalidEmbedding("a zip request carries the embedding's data as embedding.bin, not data_base64")
    if not isinstance(document["model_id"], str):
        raise InvalidEmbedding("embedding.model_id must be a string")
    dtype = document["dtype"]
    if dtype not in EMBEDDING_DTYPES:
        raise InvalidEmbedding(f"embedding.dtype must be one of {', '.join(EMBEDDING_DTYPES)}, not {dtype!r}")
    data = raw_data if raw_data is not None else document["data_base64"]
    if not isinstance(data, (str, bytes)):
        raise InvalidEmbedding("embedding.data_base64 must be a base64 string")
    wire = EmbeddingWire(document["model_id"], dtype, _int_list(document["shape"], "shape", MAX_SHAPE_DIMS),
                         _size_hw(document["original_size_hw"], "original_size_hw"),
                         _optional(document, "input_size_hw", _size_hw), _optional(document, "input_frame", _frame),
                         _optional(document, "point_transform", _point_transform), data)
    return wire, warnings


def read_embedding(wire: EmbeddingWire, manifest: Manifest, limits: ImageLimits) -> GivenEmbedding:
    """Check ``wire`` against this model and the image limits, then decode it (no encoder): the float32
    ``manifest.embedding_shape`` array with its sizes. Raises a 400 naming the first problem."""
    expected_id = model_id(manifest)
    if wire.model_id != expected_id:
        raise EmbeddingModelMismatch(f"the embedding was made by model {wire.model_id[:80]!r}, this endpoint serves "
                                     f"model {expected_id!r}: get the embedding from this endpoint's model")
    if wire.shape != manifest.embedding_shape:
        raise InvalidEmbedding(f"embedding.shape is {list(wire.shape)}; this model's embedding is "
                               f"{list(manifest.embedding_shape)}")
    input_size_hw = check_geometry(wire, manifest.image_size, limits)
    raw = _raw_bytes(wire.data, embedding_bytes(wire.shape, wire.dtype), wire.dtype)
    array = np.frombuffer(raw, np.dtype(wire.dtype).newbyteorder("<")).reshape(wire.shape)
    if not np.isfinite(array).all():
        raise InvalidEmbedding(f"the embedding holds {int(np.count_nonzero(~np.isfinite(array)))} non-finite values "
                               "(NaN or infinity)")
    return GivenEmbedding(np.ascontiguousarray(array, dtype=np.float32), wire.original_size_hw, input_size_hw)


def check_geometry(wire: EmbeddingWire, long_side: int, limits: ImageLimits) -> tuple[int, int]:
    """The sizes must describe a photo this endpoint would take and the resize it does: the resized (h, w)."""
    height, width = wire.original_size_hw
    if height * width > limits.max_pixels:
        raise InvalidEmbedding(f"embedding.original_size_hw {[height, width]} is {height * width} pixels, more than "
                               f"the image limit of {limits.max_pixels}")
    input_size_hw = resized_size_hw(wire.original_size_hw, long_side)
    if min(input_size_hw) < 1:
        raise InvalidEmbedding(f"embedding.original_size_hw {[height, width]} has an aspect ratio beyond "
                               f"{2 * long_side}:1, which this model cannot resize")
    if wire.input_frame is not None and wire.input_frame != long_side:
        raise InvalidEmbedding(f"embedding.input_frame is {wire.input_frame}; this model's frame is {long_side}")
    if wire.input_size_hw is not None and wire.input_size_hw != input_size_hw:
        raise InvalidEmbedding(f"embedding.input_size_hw is {list(wire.input_size_hw)}, but {[height, width]} "
                               f"resizes to {list(input_size_hw)} (the longest side to {long_side})")
    scales = point_scales_xy(wire.original_size_hw, long_side)
    given = wire.point_transform_xy
    if given is not None and not all(math.isclose(a, b, rel_tol=POINT_TRANSFORM_REL_TOL) for a, b in zip(given, scales)):
        raise InvalidEmbedding(f"embedding.point_transform {{scale_x: {given[0]}, scale_y: {given[1]}}} does not match "
                               f"original_size_hw {[height, width]}: expected {{scale_x: {scales[0]}, "
                               f"scale_y: {scales[1]}}}")
    return input_size_hw


def _raw_bytes(data: str | bytes, expected_bytes: int, dtype: str) -> bytes:
    """The array's bytes, refusing a wrong length before decoding: base64 text must be exactly
    ``4 * ceil(expected / 3)`` characters (no whitespace, padded)."""
    if isinstance(data, bytes):
        if len(data) != expected_bytes:
            raise InvalidEmbedding(f"embedding.bin has {len(data)} bytes; the shape and dtype {dtype} need "
                                   f"{expected_bytes}")
        return data
    expected_chars = -(-expected_bytes // 3) * 4
    if len(data) != expected_chars:
        raise InvalidEmbedding(f"embedding.data_base64 has {len(data)} characters; {expected_bytes} bytes of {dtype} "
                               f"are {expected_chars} characters of padded base64 (no whitespace)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidEmbedding(f"embedding.data_base64 is not valid base64: {exc}") from exc
    if len(raw) != expected_bytes:
        raise InvalidEmbedding(f"embedding.data_base64 decodes to {len(raw)} bytes; {expected_bytes} are needed")
    return raw


def _optional(document: Mapping[str, Any], key: str, parse: Any) -> Any:
    return None if document.get(key) is None else parse(document[key], key)


def _int_list(value: Any, key: str, max_items: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= max_items or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise InvalidEmbedding(f"embedding.{key} must be a list of 1 to {max_items} positive integers")
    return tuple(value)


def _size_hw(value: Any, key: str) -> tuple[int, int]:
    sizes = _int_list(value, key, 2)
    if len(sizes) != 2:
        raise InvalidEmbedding(f"embedding.{key} must be [height, width]")
    return sizes[0], sizes[1]


def _frame(value: Any, key: str) -> int:
    return _int_list([value], key, 1)[0]


def _point_transform(value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, dict) or not all(
            isinstance(value.get(k), (int, float)) and not isinstance(value.get(k), bool) for k in ("scale_x", "scale_y")):
        raise InvalidEmbedding(f"embedding.{key} must be {{\"scale_x\": number, \"scale_y\": number}}")
    try:
        return float(value["scale_x"]), float(value["scale_y"])
    except OverflowError as exc:  # an integer of 309+ digits
        raise InvalidEmbedding(f"embedding.{key} holds a number far too large to be a scale") from exc
