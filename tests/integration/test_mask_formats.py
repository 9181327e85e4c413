"""COCO RLE masks and per-click boxes over real HTTP (tiny model), checked against the in-process answer."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor, HoldResult
from runtime.masks import box_xyxy
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode under numpy 2

JPEG = encode(synthetic_image((480, 640), seed=41), "JPEG", quality=90)
POINTS = [{"x": 100.0, "y": 300.0}, {"x": 420.5, "y": 60.0}, {"x": 600.0, "y": 400.0}]


@pytest.fixture(scope="module")
def expected(tiny_model_dir: Path) -> HoldResult:
    """The in-process answer with per-click masks: what the server must send as RLE."""
    extractor = HoldExtractor.from_model_dir(tiny_model_dir, RuntimeSettings())
    clicks = tuple(Click(p["x"], p["y"]) for p in POINTS)
    return extractor.extract(ExtractRequest(clicks, image_bytes=JPEG, options=ExtractOptions(per_click_masks=True)))


def _decode(rle: dict[str, Any]) -> np.ndarray:
    assert set(rle) == {"size", "counts"} and isinstance(rle["counts"], str)
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def _post(server: Any, body: bytes, content_type: str, **headers: str) -> httpx.Response:
    response = httpx.post(server.url + "/invocations", content=body,
                          headers={"Content-Type": content_type, **headers}, timeout=60)
    assert response.status_code == 200, response.text
    return response


def test_json_rle_union_and_per_click_masks_and_boxes(tiny_server: Any, expected: HoldResult) -> None:
    body = json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": POINTS,
                       "outputs": {"result_format": "none", "mask_format": "rle", "per_click_masks": True}}).encode()
    data = _post(tiny_server, body, "application/json").json()
    assert data["mask_image_base64"] is None and data["result_image_base64"] is None
    assert data["mask_rle"]["size"] == [480, 640]
    np.testing.assert_array_equal(_decode(data["mask_rle"]), expected.mask)
    assert expected.prompt_masks is not None and len(data["per_click_masks_rle"]) == 3
    assert "per_click_masks_base64" not in data
    for rle, click, mask in zip(data["per_click_masks_rle"], data["clicks"], expected.prompt_masks):
        decoded = _decode(rle)
        np.testing.assert_array_equal(decoded, mask)
        assert click["area"] == int(decoded.sum())
        box = box_xyxy(decoded)
        assert click["bbox_xyxy"] == (None if box is None else list(box))
    assert any(click["bbox_xyxy"] is not None for click in data["clicks"])


def test_zip_rle_travels_in_metadata(tiny_server: Any, expected: HoldResult) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.bin", JPEG)
        archive.writestr("points.json", json.dumps({"points": POINTS, "outputs": {"mask_format": "rle"}}))
    answer = zipfile.ZipFile(io.BytesIO(_post(tiny_server, buffer.getvalue(), "application/zip").content))
    assert "mask_image.bin" not in answer.namelist() and "result_image.bin" in answer.namelist()
    meta = json.loads(answer.read("metadata.json"))
    np.testing.assert_array_equal(_decode(meta["mask_rle"]), expected.mask)
    assert [c["bbox_xyxy"] for c in meta["clicks"]] == [None if p.box_xyxy is None else list(p.box_xyxy)
                                                       for p in expected.prompts]


def test_raw_image_custom_attributes_ask_for_rle(tiny_server: Any, expected: HoldResult) -> None:
    attributes = "points=" + ";".join(f"{p['x']},{p['y']}" for p in POINTS) + "&result_format=none&mask_format=rle"
    data = _post(tiny_server, JPEG, "image/jpeg", **{"X-Amzn-SageMaker-Custom-Attributes": attributes}).json()
    np.testing.assert_array_equal(_decode(data["mask_rle"]), expected.mask)


def test_unknown_mask_format_is_a_400_naming_the_choices(tiny_server: Any) -> None:
    body = json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": POINTS,
                       "outputs": {"mask_format": "coco"}}).encode()
    response = httpx.post(tiny_server.url + "/invocations", content=body,
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 400
    assert "png, png1, rle, none" in response.json()["message"]
    schema = httpx.get(tiny_server.url + "/openapi.json").json()
    outputs = schema["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "rle" in outputs["properties"]["outputs"]["properties"]["mask_format"]["enum"]
