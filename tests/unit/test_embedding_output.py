"""``outputs.embedding``: parsing, the answer limit, and the wire object (pure functions)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import pytest

from runtime.errors import AnswerTooLarge, BadRequest
from runtime.holds import HoldResult
from runtime.manifest import Manifest
from runtime.masks import BitMask
from serving.contract import parse_json, parse_raw_image
from serving.embeddings import check_embedding_fits, embedding_bytes, encoder_variant, model_id, serialise_embedding
from serving.openapi import REQUEST_SCHEMA, RESPONSE_SCHEMA

SHAPE = (1, 256, 64, 64)
LIMIT = 6 * 1024 * 1024


def _parse(outputs: dict[str, object]) -> str | None:
    body = json.dumps({"image_id": "0" * 32, "points": [], "outputs": outputs})
    return parse_json(body).outputs.embedding_dtype


def test_embedding_dtype_parsing() -> None:
    assert _parse({}) is None
    assert _parse({"embedding": True}) == "float16"
    assert _parse({"embedding": True, "embedding_dtype": "float32"}) == "float32"
    assert _parse({"embedding": False, "embedding_dtype": "float32"}) is None
    with pytest.raises(BadRequest, match="embedding_dtype must be one of float16, float32"):
        _parse({"embedding": True, "embedding_dtype": "int8"})
    with pytest.raises(BadRequest, match="outputs.embedding"):
        _parse({"embedding": "yes"})


def test_raw_image_attributes_ask_for_the_embedding() -> None:
    parsed = parse_raw_image(b"\xff\xd8", "embedding=true&embedding_dtype=float32")
    assert parsed.outputs.embedding_dtype == "float32" and parsed.warnings == ()


def test_float32_in_json_fits_alone_but_not_beside_large_files() -> None:
    assert embedding_bytes(SHAPE, "float16") == 2 << 20 and embedding_bytes(SHAPE, "float32") == 4 << 20
    check_embedding_fits(SHAPE, "float32", True, 0, LIMIT)  # 5.33 MiB of base64
    check_embedding_fits(SHAPE, "float16", True, 3 << 20, LIMIT)  # 2.67 MiB + 3 MiB
    with pytest.raises(AnswerTooLarge, match="float16") as refused:
        check_embedding_fits(SHAPE, "float32", True, 1 << 20, LIMIT)
    assert str(LIMIT) in refused.value.message
    check_embedding_fits(SHAPE, "float32", False, 1 << 20, LIMIT)  # zip: raw 4 MiB + 1 MiB


def _manifest(encoder_sha256: str = "ab" * 32, weights: Mapping[str, object] | None = None) -> Manifest:
    spec = {"name": "x", "dtype": "float32", "shape": list(SHAPE)}
    encoder = {"file": "e.onnx", "precision": "fp32", "size_bytes": 1, "sha256": encoder_sha256, "inputs": [spec],
               "outputs": [spec]}
    decoder = {**encoder, "file": "d.onnx", "sha256": "cd" * 32}
    return Manifest.from_json({"format_version": 1, "model_type": "vit_t", "image_size": 1024,
                               "pixel_mean": [0, 0, 0], "pixel_std": [1, 1, 1], "mask_threshold": 0.0,
                               "num_mask_tokens": 4, "models": {"encoder": encoder, "decoder": decoder},
                               "weights": dict(weights or {}) or {"origin": "random", "seed": 3}})


def test_model_id_names_the_checkpoint_not_the_encoder_file() -> None:
    """Tiers of one checkpoint (another encoder file: fp16, int8) share the id; another checkpoint does not."""
    checkpoint = {"origin": "checkpoint", "file": "sam.pth", "sha256": "12" * 32}
    fp32 = model_id(_manifest("ab" * 32, checkpoint))
    assert fp32 == hashlib.sha256(f"vit_t:checkpoint:{'12' * 32}".encode()).hexdigest()
    assert model_id(_manifest("ef" * 32, checkpoint)) == fp32
    assert model_id(_manifest("ab" * 32, {**checkpoint, "sha256": "34" * 32})) != fp32
    # Without a recorded checkpoint hash (random weights) the decoder that consumes the embedding names it.
    assert model_id(_manifest()) == hashlib.sha256(f"vit_t:decoder:{'cd' * 32}".encode()).hexdigest()
    assert model_id(_manifest("ef" * 32)) == model_id(_manifest())
    assert [encoder_variant(p) for p in ("f32", "fp32", "fp16", "bf16", "int8")] == ["fp32", "fp32", "fp16", "bf16",
                                                                                     "int8"]


def test_wire_object_and_bytes() -> None:
    manifest = _manifest()
    embedding = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    result = HoldResult("f" * 32, False, (3000, 4000), (3000, 4000), BitMask.empty((3000, 4000)), [], None, None, {},
                        None, embedding, (768, 1024))
    encoded = serialise_embedding(result, manifest, "float16", "int8")
    assert encoded.data == embedding.astype("<f2").tobytes()
    assert encoded.document == {
        "model_id": hashlib.sha256(f"vit_t:decoder:{'cd' * 32}".encode()).hexdigest(), "model_type": "vit_t",
        "encoder_variant": "int8", "dtype": "float16", "shape": list(SHAPE), "image_id": "f" * 32, "original_size_hw": [3000, 4000],
        "input_size_hw": [768, 1024], "input_frame": 1024, "point_transform": {"scale_x": 1024 / 4000, "scale_y": 768 / 3000}}
    assert model_id(manifest) == encoded.document["model_id"]


def test_openapi_documents_the_embedding() -> None:
    outputs = REQUEST_SCHEMA["properties"]["outputs"]["properties"]
    assert outputs["embedding_dtype"]["enum"] == ["float16", "float32"] and outputs["embedding_dtype"]["default"] == "float16"
    assert "point_transform" in RESPONSE_SCHEMA["properties"]["embedding"]["properties"]


def test_point_scales_are_per_axis_where_rounding_makes_them_differ() -> None:
    """333x1000 resizes to 341x1024: x scales by 1.024, y by 341/333; a swap or a shared scale fails."""
    from runtime.sam_preprocessing import point_scales_xy, to_model_coords

    scale_x, scale_y = point_scales_xy((333, 1000), 1024)
    assert (scale_x, scale_y) == (1024 / 1000, 341 / 333) and scale_x != scale_y
    mapped = to_model_coords(np.array([[999.0, 332.0]]), (333, 1000), 1024)[0]
    assert np.float32(999.0 * scale_x) == mapped[0] and np.float32(332.0 * scale_y) == mapped[1]
