"""The image embedding in an answer (``outputs.embedding: true``): its wire object and bytes.

A JSON answer carries ``"embedding": {...}`` (the object below plus ``data_base64``); a zip
answer carries the same object without ``data_base64`` as ``embedding.json`` and the raw
array as ``embedding.bin`` (C order, little-endian); an ``image/png`` answer (the mask alone)
cannot carry it: 406 ``not_acceptable``. The object::

    {"model_id": "<hex>", "model_type": "vit_t", "encoder_variant": "fp32", "dtype": "float16", "shape": [1, 256, 64, 64],
     "image_id": "...", "original_size_hw": [H, W], "input_size_hw": [h, w], "input_frame": 1024,
     "point_transform": {"scale_x": w / W, "scale_y": h / H}}

A point (x, y) in upright original pixels is (x * scale_x, y * scale_y) in the ``input_frame``
(the decoder's coordinates): the arithmetic of SAM's ``ResizeLongestSide.apply_coords`` and of
``runtime.sam_preprocessing.to_model_coords`` (float64 scales new/old, then float32).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.errors import AnswerTooLarge
from runtime.holds import HoldResult
from runtime.manifest import Manifest
from runtime.outputs import EmbeddingDtype
from runtime.sam_preprocessing import point_scales_xy
from runtime.tensors import to_host

#: Zip members of an answer with the embedding.
EMBEDDING_JSON_MEMBER, EMBEDDING_BIN_MEMBER = "embedding.json", "embedding.bin"


def model_id(manifest: Manifest) -> str:
    """The identity of the checkpoint whose decoder consumes this model's embeddings: hex SHA-256 of
    ``"<model_type>:<checkpoint_identity(manifest)>"``.

    Every tier exported from one checkpoint (fp32, fp16 or int8 encoder; GPU or CPU) shares it, so an
    embedding made by one is accepted by another; which encoder file ran is ``encoder_variant``.
    """
    text = f"{manifest.model_type}:{checkpoint_identity(manifest)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def checkpoint_identity(manifest: Manifest) -> str:
    """``checkpoint:<sha256>``: the checkpoint file's SHA-256 that the export records (manifest
    ``weights.sha256``, for ``--checkpoint`` and official weights); a model without one (seeded random
    weights, a test decoder) is named by what consumes the embedding: ``decoder:<decoder.onnx's sha256>``."""
    checkpoint_sha256 = manifest.weights.get("sha256")
    if isinstance(checkpoint_sha256, str) and checkpoint_sha256:
        return f"checkpoint:{checkpoint_sha256}"
    return f"decoder:{manifest.models['decoder'].sha256}"


#: ``SamEngine.precision`` (CPU tier f32/bf16/int8, GPU fp32/fp16) -> the embedding's ``encoder_variant``.
_ENCODER_VARIANTS = {"f32": "fp32", "fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "int8"}


def encoder_variant(precision: str) -> str:
    """Which encoder made an embedding (informational: fp32, fp16, bf16, int8), from the engine's precision."""
    return _ENCODER_VARIANTS.get(precision, precision)


@dataclass(frozen=True)
class SerialisedEmbedding:
    """An answer's embedding: ``document`` (the wire object without its data) and ``data`` (the raw
    little-endian array, C order, ``document['shape']`` of ``document['dtype']``)."""

    document: dict[str, Any]
    data: bytes


def embedding_bytes(shape: tuple[int, ...], dtype: EmbeddingDtype) -> int:
    """The raw array's bytes: product of ``shape`` times the dtype's size."""
    return math.prod(shape) * np.dtype(dtype).itemsize


def serialise_embedding(result: HoldResult, manifest: Manifest, dtype: EmbeddingDtype,
                     precision: str = "f32") -> SerialisedEmbedding:
    """``result``'s embedding (float32 1x256x64x64, host or device) as ``dtype`` with its wire object;
    ``precision``: the engine's (``SamEngine.precision``), named in ``encoder_variant``."""
    if result.embedding is None or result.input_size_hw is None:
        raise ValueError("the result carries no embedding")
    array = np.ascontiguousarray(to_host(result.embedding), dtype=np.dtype(dtype).newbyteorder("<"))
    height, width = result.orig_size_hw
    input_h, input_w = result.input_size_hw
    document: dict[str, Any] = {
        "model_id": model_id(manifest),
        "model_type": manifest.model_type,
        "encoder_variant": encoder_variant(precision),
        "dtype": dtype,
        "shape": [int(d) for d in array.shape],
        "image_id": result.image_id,
        "original_size_hw": [height, width],
        "input_size_hw": [input_h, input_w],
        "input_frame": manifest.image_size,
        "point_transform": dict(zip(("scale_x", "scale_y"), point_scales_xy((height, width), manifest.image_size))),
    }
    return SerialisedEmbedding(document, array.tobytes())


def check_embedding_fits(shape: tuple[int, ...], dtype: EmbeddingDtype, base64_framed: bool,
                         other_least_bytes: int, limit_bytes: int) -> None:
    """Refuse (413 ``output_too_large``), before any model work, an embedding the answer limit cannot carry
    beside the answer's other files' least size (``other_least_bytes``). ``base64_framed``: a JSON answer."""
    raw = embedding_bytes(shape, dtype)
    framed = -(-raw // 3) * 4 if base64_framed else raw
    if framed + other_least_bytes > limit_bytes:
        advice = "ask for outputs.embedding_dtype float16" if dtype != "float16" else "ask for the embedding alone"
        raise AnswerTooLarge(f"a {dtype} embedding takes {framed} bytes in this answer, which with the rest "
                             f"({other_least_bytes} bytes at least) is more than the response limit of "
                             f"{limit_bytes} bytes: {advice}, or use the zip contract (raw bytes, no base64)")
