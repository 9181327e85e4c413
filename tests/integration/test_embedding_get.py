"""``outputs.embedding``: the image embedding in JSON and zip answers of a real server (tiny model)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.sam_preprocessing import to_model_coords
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode

IMAGE = synthetic_image((600, 800), seed=47)
JPEG = encode(IMAGE, "JPEG", quality=90)
POINTS = [{"x": 120.0, "y": 340.0}, {"x": 560.5, "y": 80.0}]


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The in-process runtime's float32 embedding of JPEG, its mask for POINTS, and its resized (h, w)."""
    extractor = HoldExtractor.from_model_dir(tiny_model_dir, RuntimeSettings())
    entry, *_ = extractor.embed(JPEG)
    mask = extractor.extract(ExtractRequest(tuple(Click(p["x"], p["y"]) for p in POINTS), image_bytes=JPEG)).mask
    return np.asarray(entry.embedding, np.float32), mask, entry.input_size_hw


def _expected_model_id(model_dir: Path) -> str:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    # Random weights record no checkpoint hash: the decoder that consumes the embedding names the model.
    return hashlib.sha256(f"{manifest['model_type']}:decoder:{manifest['models']['decoder']['sha256']}".encode()
                          ).hexdigest()


def _post(server, document: dict, accept: str = "application/json") -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(server.url + "/invocations", content=json.dumps(document).encode(),
                      headers={"Content-Type": "application/json", "Accept": accept}, timeout=120)


def _request(points: list[dict[str, float]], **outputs: object) -> dict[str, object]:
    return {"image_base64": base64.b64encode(JPEG).decode(), "points": points, "outputs": outputs}


def test_json_answer_carries_the_float16_embedding_by_default(tiny_server, tiny_model_dir, reference) -> None:  # type: ignore[no-untyped-def]
    embedding32, mask, input_hw = reference
    response = _post(tiny_server, _request(POINTS, embedding=True, result_format="none"))
    assert response.status_code == 200, response.text
    data = response.json()
    wire = data["embedding"]
    assert wire["dtype"] == "float16" and wire["shape"] == list(embedding32.shape)
    array = np.frombuffer(base64.b64decode(wire["data_base64"]), "<f2").reshape(wire["shape"])
    assert array.tobytes() == embedding32.astype("<f2").tobytes()
    assert wire["model_id"] == _expected_model_id(tiny_model_dir) and wire["encoder_variant"] == "fp32"
    assert wire["image_id"] == data["image_id"] and wire["original_size_hw"] == [600, 800]
    assert wire["input_size_hw"] == list(input_hw) and wire["input_frame"] == 1024
    # The point transform is the runtime's own (ResizeLongestSide.apply_coords) mapping.
    point = np.array([[[560.5, 80.0]]])
    mapped = to_model_coords(point, (600, 800), 1024)[0, 0]
    transform = wire["point_transform"]
    assert np.float32(560.5 * transform["scale_x"]) == mapped[0] and np.float32(80.0 * transform["scale_y"]) == mapped[1]
    # The masks are those of the same request without the embedding.
    answered = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["mask_image_base64"])))) > 0
    assert np.array_equal(answered, mask)
    plain = _post(tiny_server, _request(POINTS, result_format="none")).json()
    assert plain["mask_image_base64"] == data["mask_image_base64"] and "embedding" not in plain


def test_zip_answer_carries_the_float32_embedding_raw(tiny_server, reference) -> None:  # type: ignore[no-untyped-def]
    embedding32, _, _ = reference
    response = _post(tiny_server, _request(POINTS, embedding=True, embedding_dtype="float32"), accept="application/zip")
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        document = json.loads(archive.read("embedding.json"))
        raw = archive.read("embedding.bin")
        metadata = json.loads(archive.read("metadata.json"))
    assert document["dtype"] == "float32" and "data_base64" not in document
    assert raw == embedding32.astype("<f4").tobytes()
    assert document["image_id"] == metadata["image_id"]


def test_embedding_alone_needs_no_points(tiny_server, reference) -> None:  # type: ignore[no-untyped-def]
    embedding32, _, _ = reference
    response = _post(tiny_server, _request([], embedding=True, result_format="none", mask_format="none"))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["clicks"] == [] and data["empty"] is True
    assert base64.b64decode(data["embedding"]["data_base64"]) == embedding32.astype("<f2").tobytes()
    # Without outputs.embedding, no points is still a 400.
    refused = _post(tiny_server, _request([], result_format="none"))
    assert refused.status_code == 400 and "hold point" in refused.text


def test_embedding_by_image_id_follow_up(tiny_server, reference) -> None:  # type: ignore[no-untyped-def]
    embedding32, _, _ = reference
    image_id = _post(tiny_server, _request(POINTS, result_format="none")).json()["image_id"]
    response = _post(tiny_server, {"image_id": image_id, "outputs": {"embedding": True, "embedding_dtype": "float32",
                                                                     "result_format": "none"}})
    assert response.status_code == 200, response.text
    assert base64.b64decode(response.json()["embedding"]["data_base64"]) == embedding32.astype("<f4").tobytes()


def test_mask_only_answer_cannot_carry_the_embedding(tiny_server) -> None:  # type: ignore[no-untyped-def]
    response = _post(tiny_server, _request(POINTS, embedding=True), accept="image/png")
    assert response.status_code == 406 and "embedding" in response.text


def test_unknown_embedding_dtype_is_refused(tiny_server) -> None:  # type: ignore[no-untyped-def]
    response = _post(tiny_server, _request(POINTS, embedding=True, embedding_dtype="bfloat16"))
    assert response.status_code == 400 and "embedding_dtype" in response.text


def test_the_embedding_alone_builds_no_cutout(tiny_server) -> None:  # type: ignore[no-untyped-def]
    """No points and no result_format: none is implied, so no cut-out pixels are made or sent."""
    response = _post(tiny_server, {"image_base64": base64.b64encode(JPEG).decode(), "outputs": {"embedding": True}})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["result_image_base64"] is None and "cutout_pixels_ms" not in data["timings_ms"]
    assert data["embedding"]["dtype"] == "float16"
