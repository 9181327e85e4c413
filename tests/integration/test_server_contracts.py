"""The wire contracts over real HTTP against a real server process (tiny model)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode

IMAGE = synthetic_image((600, 800), seed=31)
JPEG = encode(IMAGE, "JPEG", quality=90)
POINTS = [{"x": 120.0, "y": 340.0}, {"x": 560.5, "y": 80.0}, {"x": 700.0, "y": 500.0}]


@pytest.fixture(scope="module")
def expected_mask(tiny_model_dir: Path) -> np.ndarray:
    """The in-process runtime's answer for JPEG + POINTS: the server must return exactly this."""
    extractor = HoldExtractor.from_model_dir(tiny_model_dir, RuntimeSettings())
    clicks = tuple(Click(p["x"], p["y"]) for p in POINTS)
    return extractor.extract(ExtractRequest(clicks, image_bytes=JPEG)).mask


def _png(data: str | bytes) -> Image.Image:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    image = Image.open(io.BytesIO(raw))
    assert image.format == "PNG"
    return image


def _post(server, body: bytes, content_type: str, **headers: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(server.url + "/invocations", content=body, headers={"Content-Type": content_type, **headers},
                      timeout=60)


def test_guide_smoke_payload(tiny_server) -> None:  # type: ignore[no-untyped-def]
    white = encode(Image.new("RGB", (1, 1), "white"), "PNG")
    body = json.dumps({"image_base64": base64.b64encode(white).decode(), "points": [{"x": 0.5, "y": 0.5}]})
    response = _post(tiny_server, body.encode(), "application/json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    data = response.json()
    result, mask = _png(data["result_image_base64"]), _png(data["mask_image_base64"])
    assert result.mode == "RGBA" and result.size == (1, 1) and mask.mode == "L" and mask.size == (1, 1)
    assert np.asarray(result)[0, 0, :3].tolist() == [255, 255, 255]
    assert np.asarray(result)[0, 0, 3] == (255 if np.asarray(mask)[0, 0] else 25)


def test_json_contract_matches_runtime(tiny_server, expected_mask: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": POINTS}).encode()
    data = _post(tiny_server, body, "application/json").json()
    mask = np.asarray(_png(data["mask_image_base64"]))
    np.testing.assert_array_equal(mask > 0, expected_mask)
    assert set(np.unique(mask)) <= {0, 255}
    rgba = np.asarray(_png(data["result_image_base64"]))
    assert rgba.shape == (600, 800, 4)
    np.testing.assert_array_equal(rgba[..., 3], np.where(expected_mask, 255, 25))
    np.testing.assert_array_equal(rgba[..., :3], np.asarray(Image.open(io.BytesIO(JPEG)).convert("RGB")))
    assert len(data["clicks"]) == 3 and data["width"] == 800 and data["height"] == 600
    assert data["empty"] == (not expected_mask.any())
    assert {"decoder_ms", "postprocess_ms"} <= set(data["timings_ms"])


def test_zip_contract_as_the_old_client_sends_it(tiny_server, expected_mask: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("image.bin", JPEG)
        archive.writestr("points.json", json.dumps({"points": POINTS}))
    response = _post(tiny_server, buffer.getvalue(), "application/zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert {"result_image.bin", "mask_image.bin"} <= set(archive.namelist())
        mask = np.asarray(_png(archive.read("mask_image.bin")))
        assert _png(archive.read("result_image.bin")).mode == "RGBA"
        assert json.loads(archive.read("metadata.json"))["image_id"]
    np.testing.assert_array_equal(mask > 0, expected_mask)


def test_raw_image_with_custom_attributes_and_mask_only(tiny_server, expected_mask: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    attributes = "points=" + ";".join(f"{p['x']},{p['y']}" for p in POINTS)
    response = _post(tiny_server, JPEG, "image/jpeg", **{"X-Amzn-SageMaker-Custom-Attributes": attributes,
                                                       "Accept": "image/png"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(_png(response.content)) > 0, expected_mask)
    assert "image_id=" in response.headers["x-amzn-sagemaker-custom-attributes"]


def test_raw_image_json_answer_with_compact_outputs(tiny_server, expected_mask: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    attributes = "points=" + ";".join(f"{p['x']},{p['y']}" for p in POINTS) + "&labels=1,1,1&result_format=webp&mask_format=png1"
    data = _post(tiny_server, JPEG, "image/jpeg", **{"X-Amzn-SageMaker-Custom-Attributes": attributes}).json()
    result = Image.open(io.BytesIO(base64.b64decode(data["result_image_base64"])))
    mask = _png(data["mask_image_base64"])
    assert result.format == "WEBP" and mask.mode == "1"
    np.testing.assert_array_equal(np.asarray(mask.convert("L")) > 0, expected_mask)


def test_accept_negotiation(tiny_server) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": POINTS[:1]}).encode()
    as_zip = _post(tiny_server, body, "application/json", Accept="application/zip")
    assert as_zip.headers["content-type"] == "application/zip"
    preferred = _post(tiny_server, body, "application/json", Accept="text/html;q=0.9, image/png;q=0.8, */*;q=0.1")
    assert preferred.headers["content-type"] == "image/png"
    refused = _post(tiny_server, body, "application/json", Accept="text/csv")
    assert refused.status_code == 406 and refused.json()["error"] == "not_acceptable"


def test_image_id_follow_up_skips_the_upload(tiny_server, expected_mask: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    first = _post(tiny_server, json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": POINTS}).encode(),
                  "application/json").json()
    follow = _post(tiny_server, json.dumps({"image_id": first["image_id"], "points": POINTS,
                                            "outputs": {"result_format": "none"}}).encode(), "application/json").json()
    assert follow["cache_hit"] and follow["result_image_base64"] is None
    assert "encoder_ms" not in follow["timings_ms"]
    np.testing.assert_array_equal(np.asarray(_png(follow["mask_image_base64"])) > 0, expected_mask)
    stats = httpx.get(tiny_server.url + "/stats").json()
    assert stats["cache"]["hits"] >= 1 and stats["provider"] == "cpu"


def test_sagemaker_runtime_path_and_healthz(tiny_server) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": POINTS[:1]}).encode()
    response = httpx.post(tiny_server.url + "/endpoints/sam-climbing-endpoint/invocations", content=body,
                          headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 200 and "x-request-id" in response.headers
    assert httpx.get(tiny_server.url + "/healthz").json() == {"status": "ok"}
    schema = httpx.get(tiny_server.url + "/openapi.json").json()
    assert "/invocations" in schema["paths"] and schema["openapi"].startswith("3.")


def test_unknown_fields_are_ignored_with_a_warning(tiny_server) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": POINTS[:1], "session": 1}).encode()
    data = _post(tiny_server, body, "application/json").json()
    assert data["warnings"][1:] == ["unknown field 'session' ignored"]  # [0]: the tiny model's random weights
