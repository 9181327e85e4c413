"""A brought embedding (``"embedding": {...}`` instead of a photo) through real servers.

Masks from a brought float32 embedding are byte-equal to the photo's own request (tiny model: the
embedding's values matter; cone model at 333x1000: the sizes and point transform matter), float16
within ``FLOAT16_MIN_IOU``; it is never cached, and another model's embedding is a 400 naming both ids.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import httpx
import numpy as np
from PIL import Image

from synthetic.test_images import synthetic_image
from tests.integration.server import LocalEndpoint
from tests.reference import encode

JPEG = encode(synthetic_image((600, 800), seed=47), "JPEG", quality=90)
POINTS = [{"x": 120.0, "y": 340.0}, {"x": 560.5, "y": 80.0}, {"x": 700.0, "y": 500.0, "label": 0}]
#: 333x1000 resizes to 341x1024: x and y scale differently, so a swapped transform moves the disks.
CONE_PHOTO = encode(synthetic_image((333, 1000), seed=9), "PNG")
CONE_POINTS = [{"x": 300.0, "y": 100.0}, {"x": 990.0, "y": 320.0}]
#: The least IoU of a float16 embedding's masks with the float32 ones (tiny model, POINTS). Measured:
#: see the report; float16 rounding (relative 2**-11) flips only pixels whose logit is near 0.
FLOAT16_MIN_IOU = 0.99
MASKS = {"mask_format": "png", "per_click_masks": True}


def _post(server: LocalEndpoint, document: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/invocations", content=json.dumps(document).encode(),
                      headers={"Content-Type": "application/json", **headers}, timeout=120)


def _photo_answer(server: LocalEndpoint, photo: bytes, points: list[dict[str, float]], dtype: str) -> dict[str, Any]:
    """The photo's own answer for ``points``, carrying its embedding in ``dtype``."""
    response = _post(server, {"image_base64": base64.b64encode(photo).decode(), "points": points, "outputs": {
        **MASKS, "result_format": "none", "embedding": True, "embedding_dtype": dtype}})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _brought(server: LocalEndpoint, embedding: dict[str, Any], points: list[dict[str, float]],
             **headers: str) -> httpx.Response:
    return _post(server, {"embedding": embedding, "points": points, "outputs": MASKS}, **headers)


def _mask(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L")) > 0


def _cache_counts(server: LocalEndpoint) -> dict[str, int]:
    return dict(httpx.get(server.url + "/stats", timeout=10).json()["cache"])


def test_float32_brought_masks_equal_the_photos_and_nothing_is_cached(tiny_server: LocalEndpoint) -> None:
    photo = _photo_answer(tiny_server, JPEG, POINTS, "float32")
    before = _cache_counts(tiny_server)
    response = _brought(tiny_server, photo["embedding"], POINTS)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["mask_image_base64"] == photo["mask_image_base64"]
    assert answer["per_click_masks_base64"] == photo["per_click_masks_base64"]
    assert answer["clicks"] == photo["clicks"] and not answer["empty"]
    assert answer["result_image_base64"] is None  # no pixels, no cut-out (result_format none by default)
    assert answer["image_id"] is None and "image_id=" not in response.headers["X-Amzn-SageMaker-Custom-Attributes"]
    assert "encoder_ms" not in answer["timings_ms"]
    assert _cache_counts(tiny_server) == before  # no lookup, no entry, no bytes


def test_zip_request_brings_the_raw_array(tiny_server: LocalEndpoint) -> None:
    photo = _photo_answer(tiny_server, JPEG, POINTS, "float32")
    document = dict(photo["embedding"])
    raw = base64.b64decode(document.pop("data_base64"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("points.json", json.dumps({"points": POINTS, "outputs": {"mask_format": "png"}}))
        archive.writestr("embedding.json", json.dumps(document))
        archive.writestr("embedding.bin", raw)
    response = httpx.post(tiny_server.url + "/invocations", content=buffer.getvalue(),
                          headers={"Content-Type": "application/zip"}, timeout=120)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as answer:
        assert "result_image.bin" not in answer.namelist()
        assert answer.read("mask_image.bin") == base64.b64decode(photo["mask_image_base64"])


def test_float16_brought_masks_are_within_the_stated_iou(tiny_server: LocalEndpoint) -> None:
    photo = _photo_answer(tiny_server, JPEG, POINTS, "float16")
    response = _brought(tiny_server, photo["embedding"], POINTS)
    assert response.status_code == 200, response.text
    answer = response.json()
    for ours, theirs in zip([answer["mask_image_base64"], *answer["per_click_masks_base64"]],
                            [photo["mask_image_base64"], *photo["per_click_masks_base64"]]):
        a, b = _mask(ours), _mask(theirs)
        iou = (a & b).sum() / max(1, (a | b).sum())
        print(f"float16 brought embedding: mask IoU {iou:.6f} ({int((a ^ b).sum())} of {a.size} pixels differ)")
        assert iou >= FLOAT16_MIN_IOU


def test_a_brought_embedding_never_reaches_a_photos_image_id(tiny_server: LocalEndpoint) -> None:
    """Poisoned bytes that name a cached photo's image_id (or a new one) change nothing for that id."""
    photo = _photo_answer(tiny_server, JPEG, POINTS, "float32")
    array = np.frombuffer(base64.b64decode(photo["embedding"]["data_base64"]), "<f4")
    poisoned = {**photo["embedding"], "data_base64": base64.b64encode((-array).astype("<f4").tobytes()).decode()}
    assert _brought(tiny_server, poisoned, POINTS).json()["mask_image_base64"] != photo["mask_image_base64"]
    follow_up = _post(tiny_server, {"image_id": photo["image_id"], "points": POINTS, "outputs": {
        **MASKS, "result_format": "none"}}).json()
    assert follow_up["mask_image_base64"] == photo["mask_image_base64"]
    unseen = "e" * 32
    assert _brought(tiny_server, {**poisoned, "image_id": unseen}, POINTS).status_code == 200
    missing = _post(tiny_server, {"image_id": unseen, "points": POINTS})
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_image_id"


def test_bad_embeddings_are_400s_naming_the_problem(tiny_server: LocalEndpoint) -> None:
    photo = _photo_answer(tiny_server, JPEG, POINTS[:1], "float16")
    embedding = photo["embedding"]
    nan = np.frombuffer(base64.b64decode(embedding["data_base64"]), "<f2").copy()
    nan[12345] = np.nan
    cases = [
        ({"embedding": {**embedding, "data_base64": base64.b64encode(nan.tobytes()).decode()}, "points": POINTS},
         {}, "invalid_embedding", "non-finite"),
        ({"embedding": {**embedding, "shape": [1, 256, 32, 32]}, "points": POINTS}, {}, "invalid_embedding",
         "[1, 256, 64, 64]"),
        ({"embedding": embedding, "points": POINTS, "outputs": {"result_format": "png"}}, {}, "bad_request",
         "brought embedding has none"),
        ({"embedding": embedding, "points": POINTS}, {"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"}, "bad_request",
         "session"),
        ({"embedding": embedding, "points": [{"x": 900.0, "y": 10.0}]}, {}, "invalid_points", "outside the 800x600"),
    ]
    for document, headers, code, text in cases:
        response = _post(tiny_server, document, **headers)
        assert response.status_code == 400, (code, response.text)
        assert response.json()["error"] == code and text in response.json()["message"], response.text



def test_cone_masks_follow_the_brought_sizes(cone_server: LocalEndpoint) -> None:
    """The cone's disks sit where the brought original_size_hw and point transform put them (333x1000)."""
    photo = _photo_answer(cone_server, CONE_PHOTO, CONE_POINTS, "float32")
    assert photo["embedding"]["input_size_hw"] == [341, 1024]
    response = _brought(cone_server, photo["embedding"], CONE_POINTS)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["mask_image_base64"] == photo["mask_image_base64"]
    assert answer["per_click_masks_base64"] == photo["per_click_masks_base64"]
    assert (answer["original_height"], answer["original_width"]) == (333, 1000)


def test_another_models_embedding_is_refused_naming_both_ids(tiny_server: LocalEndpoint,
                                                             cone_server: LocalEndpoint) -> None:
    tiny = _photo_answer(tiny_server, JPEG, POINTS[:1], "float16")["embedding"]
    cone = _photo_answer(cone_server, JPEG, POINTS[:1], "float16")["embedding"]
    assert tiny["model_id"] != cone["model_id"] and tiny["shape"] == cone["shape"]
    response = _brought(cone_server, tiny, POINTS)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "embedding_model_mismatch"
    assert tiny["model_id"] in error["message"] and cone["model_id"] in error["message"]
