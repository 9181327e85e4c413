"""A brought embedding (``"embedding": {...}`` instead of a photo): parsing and checks (pure functions)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import numpy as np
import pytest

from runtime.errors import BadRequest, EmbeddingModelMismatch, InvalidEmbedding
from runtime.holds import HoldResult
from runtime.image_files import ImageLimits
from runtime.manifest import Manifest
from runtime.masks import BitMask
from serving.contract import parse_json, parse_zip
from serving.embedding_input import parse_embedding_object, read_embedding
from serving.embeddings import model_id, serialise_embedding
from serving.openapi import REQUEST_SCHEMA

SHAPE = (1, 256, 64, 64)
LIMITS = ImageLimits(max_pixels=50_000_000)
ARRAY = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)


def _manifest(decoder_sha256: str = "cd" * 32) -> Manifest:
    spec = {"name": "x", "dtype": "float32", "shape": list(SHAPE)}
    encoder = {"file": "e.onnx", "precision": "fp32", "size_bytes": 1, "sha256": "ab" * 32, "inputs": [spec],
               "outputs": [spec]}
    return Manifest.from_json({"format_version": 1, "model_type": "vit_t", "image_size": 1024,
                               "pixel_mean": [0, 0, 0], "pixel_std": [1, 1, 1], "mask_threshold": 0.0,
                               "num_mask_tokens": 4, "models": {"encoder": encoder,
                                                                "decoder": {**encoder, "sha256": decoder_sha256}}})


MANIFEST = _manifest()


def _object(dtype: str = "float32", size_hw: tuple[int, int] = (333, 1000),
            input_hw: tuple[int, int] = (341, 1024)) -> dict[str, Any]:
    """What an outputs.embedding answer returns for ARRAY (JSON: with data_base64)."""
    result = HoldResult("f" * 32, False, size_hw, size_hw, BitMask.empty(size_hw), [], None, None, {}, None, ARRAY,
                        input_hw)
    encoded = serialise_embedding(result, MANIFEST, dtype)  # type: ignore[arg-type]
    return {**encoded.document, "data_base64": base64.b64encode(encoded.data).decode()}


def _decode(document: dict[str, Any]) -> Any:
    wire, _ = parse_embedding_object(document)
    return read_embedding(wire, MANIFEST, LIMITS)


def test_an_answer_object_decodes_to_the_same_array_and_sizes() -> None:
    given = _decode(_object("float32"))
    assert given.array.dtype == np.float32 and given.array.flags.c_contiguous
    assert given.array.tobytes() == ARRAY.tobytes()
    assert (given.orig_size_hw, given.input_size_hw) == ((333, 1000), (341, 1024))
    half = _decode(_object("float16"))
    assert half.array.dtype == np.float32 and np.array_equal(half.array, ARRAY.astype(np.float16).astype(np.float32))


def test_another_models_embedding_is_refused_naming_both_ids() -> None:
    other = model_id(_manifest("ef" * 32))
    with pytest.raises(EmbeddingModelMismatch) as refused:
        _decode({**_object(), "model_id": other})
    assert refused.value.code == "embedding_model_mismatch"
    assert other in refused.value.message and model_id(MANIFEST) in refused.value.message


@pytest.mark.parametrize(("change", "message"), [
    ({"dtype": "bfloat16"}, "dtype must be one of float16, float32"),
    ({"shape": [1, 256, 32, 32]}, "this model's embedding is [1, 256, 64, 64]"),
    ({"shape": "1x256"}, "shape must be a list"),
    ({"original_size_hw": [8000, 8000]}, "more than the image limit of 50000000"),
    ({"original_size_hw": [1, 3000]}, "aspect ratio"),
    ({"original_size_hw": [0, 10]}, "positive integers"),
    ({"input_size_hw": [341, 1000]}, "resizes to [341, 1024]"),
    ({"input_frame": 512}, "this model's frame is 1024"),
    ({"point_transform": {"scale_x": 341 / 333, "scale_y": 1.024}}, "does not match original_size_hw"),
    ({"point_transform": {"scale_x": 10**400, "scale_y": 1}}, "far too large"),
    ({"model_id": 5}, "model_id must be a string"),
    ({"data_base64": None}, "base64 string"),
])
def test_each_problem_is_a_400_naming_it(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidEmbedding, match=message.replace("[", r"\[").replace("(", r"\(")) as refused:
        _decode({**_object(), **change})
    assert refused.value.code == "invalid_embedding"


def test_missing_fields_are_named() -> None:
    document = _object()
    del document["shape"], document["data_base64"]
    with pytest.raises(InvalidEmbedding, match="lacks shape, data_base64"):
        _decode(document)


def test_the_data_length_is_checked_before_decoding() -> None:
    """A wrong length is refused by its length alone: characters that are not base64 are not even read."""
    document = _object()
    short = "!" * (len(document["data_base64"]) - 4)
    with pytest.raises(InvalidEmbedding, match=f"has {len(short)} characters; 4194304 bytes of float32 are 5592408"):
        _decode({**document, "data_base64": short})
    with pytest.raises(InvalidEmbedding, match="not valid base64"):
        _decode({**document, "data_base64": "!" * len(document["data_base64"])})
    # float16 data under a float32 label: half the bytes.
    with pytest.raises(InvalidEmbedding, match="4194304 bytes of float32"):
        _decode({**document, "data_base64": _object("float16")["data_base64"]})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    poisoned = ARRAY.copy()
    poisoned[0, 7, 3, 9] = bad
    document = {**_object(), "data_base64": base64.b64encode(poisoned.astype("<f4").tobytes()).decode()}
    with pytest.raises(InvalidEmbedding, match="1 non-finite values"):
        _decode(document)


def test_json_request_defaults_to_no_cutout_and_refuses_one() -> None:
    body = {"embedding": _object(), "points": [{"x": 10, "y": 20}]}
    parsed = parse_json(json.dumps(body))
    assert parsed.outputs.result_format == "none" and parsed.embedding is not None
    assert parsed.image_bytes is None and parsed.image_id is None
    for fmt in ("png", "webp"):
        with pytest.raises(BadRequest, match=f"result_format '{fmt}' needs the photo's pixels"):
            parse_json(json.dumps({**body, "outputs": {"result_format": fmt}}))
    for other in ({"image_id": "0" * 32}, {"image_base64": base64.b64encode(b"x").decode()}):
        with pytest.raises(BadRequest, match="not several"):
            parse_json(json.dumps({**body, **other}))
    unknown = parse_json(json.dumps({**body, "embedding": {**_object(), "colour": "red"}}))
    assert unknown.warnings == ("unknown field 'embedding.colour' ignored",)


def test_asking_for_the_embedding_alone_implies_no_cutout() -> None:
    alone = parse_json(json.dumps({"image_id": "0" * 32, "outputs": {"embedding": True}}))
    assert alone.outputs.result_format == "none"
    with_points = parse_json(json.dumps({"image_id": "0" * 32, "points": [{"x": 1, "y": 1}],
                                         "outputs": {"embedding": True}}))
    assert with_points.outputs.result_format == "png"
    asked = parse_json(json.dumps({"image_id": "0" * 32, "outputs": {"embedding": True, "result_format": "webp"}}))
    assert asked.outputs.result_format == "webp"


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_request_carries_the_raw_array() -> None:
    document = _object()
    del document["data_base64"]
    points = json.dumps({"points": [{"x": 10, "y": 20}]}).encode()
    raw = ARRAY.astype("<f4").tobytes()
    parsed = parse_zip(_zip({"points.json": points, "embedding.json": json.dumps(document).encode(),
                             "embedding.bin": raw}), 16, 64 << 20)
    assert parsed.embedding is not None and parsed.outputs.result_format == "none"
    assert read_embedding(parsed.embedding, MANIFEST, LIMITS).array.tobytes() == raw
    with pytest.raises(InvalidEmbedding, match="embedding.bin has 4194300 bytes"):
        wire = parse_zip(_zip({"points.json": points, "embedding.json": json.dumps(document).encode(),
                               "embedding.bin": raw[:-4]}), 16, 64 << 20).embedding
        assert wire is not None
        read_embedding(wire, MANIFEST, LIMITS)
    with pytest.raises(BadRequest, match="lacks embedding.bin"):
        parse_zip(_zip({"points.json": points, "embedding.json": json.dumps(document).encode()}), 16, 64 << 20)
    with pytest.raises(BadRequest, match="both image.bin and embedding.json"):
        parse_zip(_zip({"points.json": points, "embedding.json": b"{}", "embedding.bin": raw, "image.bin": b"x"}),
                  16, 64 << 20)


def test_openapi_documents_the_brought_embedding() -> None:
    brought = REQUEST_SCHEMA["properties"]["embedding"]
    assert "embedding_model_mismatch" in brought["description"] and "embedding.bin" in brought["description"]
    assert set(brought["required"]) == {"model_id", "dtype", "shape", "original_size_hw", "data_base64"}
