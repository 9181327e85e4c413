"""Every bad input gets a clear 4xx naming the problem; nothing else is disturbed (real server)."""

from __future__ import annotations

import base64
import json
import zipfile

import httpx
import pytest
from PIL import Image

from synthetic.test_images import synthetic_image
from tests.reference import encode, zip_archive

PNG = encode(synthetic_image((200, 300), seed=51))
B64 = base64.b64encode(PNG).decode()
GOOD = {"image_base64": B64, "points": [{"x": 10, "y": 20}]}


def _json(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


BOMB_IMAGE = encode(Image.new("L", (10_000, 10_000)), "PNG")
CASES = [
    ("malformed json", b"{bad", "application/json", {}, 400, "bad_request", "not valid JSON"),
    ("non utf-8", b'{"points": "\xff\xfe"}', "application/json", {}, 400, "bad_request", "not UTF-8"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, "application/json", {}, 400, "bad_request", "nested too deeply"),
    ("nan literal", b'{"points": [{"x": NaN, "y": 1}]}', "application/json", {}, 400, "bad_request", "NaN"),
    ("top-level list", b"[1, 2]", "application/json", {}, 400, "bad_request", "JSON object"),
    ("bad base64", _json(image_base64="***"), "application/json", {}, 400, "bad_request", "not valid base64"),
    ("not an image", _json(image_base64=base64.b64encode(b"hello world").decode()), "application/json", {}, 400,
     "invalid_image", "not an image"),
    ("truncated image", _json(image_base64=base64.b64encode(PNG[: len(PNG) // 3]).decode()), "application/json", {},
     400, "invalid_image", "truncated or corrupt"),
    ("decompression bomb", _json(image_base64=base64.b64encode(BOMB_IMAGE).decode()), "application/json", {}, 413,
     "payload_too_large", "pixels"),
    ("points not a list", _json(points="1,2"), "application/json", {}, 400, "invalid_points", "must be a list"),
    ("point without y", _json(points=[{"x": 1}]), "application/json", {}, 400, "invalid_points", "needs both x and y"),
    ("string coordinate", _json(points=[{"x": "1", "y": 2}]), "application/json", {}, 400, "invalid_points",
     "must be a number"),
    ("boolean coordinate", _json(points=[{"x": True, "y": 2}]), "application/json", {}, 400, "invalid_points",
     "must be a number"),
    ("label 2", _json(points=[{"x": 1, "y": 2, "label": 2}]), "application/json", {}, 400, "invalid_points", "label"),
    ("outside image", _json(points=[{"x": 301, "y": 2}]), "application/json", {}, 400, "invalid_points", "outside"),
    ("too many points", _json(points=[{"x": 1, "y": 1}] * 65), "application/json", {}, 400, "invalid_points",
     "limit of 64"),
    ("bad box", _json(box=[1, 2, 3]), "application/json", {}, 400, "invalid_points", "box"),
    ("bad mode", _json(mode="all"), "application/json", {}, 400, "bad_request", "mode"),
    ("bad outputs", _json(outputs={"result_format": "gif"}), "application/json", {}, 400, "bad_request",
     "result_format"),
    ("malformed image_id", json.dumps({"image_id": "../etc", "points": []}).encode(), "application/json", {}, 400,
     "bad_request", "image_id"),
    ("unknown image_id", json.dumps({"image_id": "0" * 32, "points": [{"x": 1, "y": 1}]}).encode(),
     "application/json", {}, 404, "unknown_image_id", "send the image again"),
    ("image and image_id", _json(image_id="0" * 32), "application/json", {}, 400, "bad_request", "not both"),
    ("no image", json.dumps({"points": [{"x": 1, "y": 1}]}).encode(), "application/json", {}, 400, "bad_request",
     "no image"),
    ("unsupported type", b"x", "text/plain", {}, 415, "unsupported_media_type", "text/plain"),
    ("oversized body", b"x" * (6 * 1024 * 1024 + 1), "application/json", {}, 413, "payload_too_large", "limit"),
    ("not a zip", b"PK\x03\x04garbage", "application/zip", {}, 400, "bad_request", "not a valid zip"),
    ("zip without points", zip_archive({"image.bin": PNG}), "application/zip", {}, 400, "bad_request", "points.json"),
    ("zip path names", zip_archive({"../image.bin": PNG, "/points.json": b"{}"}), "application/zip", {}, 400,
     "bad_request", "lacks image.bin and points.json"),
    ("zip with many entries", zip_archive({f"f{i}": b"" for i in range(40)}), "application/zip", {}, 413,
     "payload_too_large", "entries"),
    ("zip bomb", zip_archive({"image.bin": b"\0" * (80 << 20), "points.json": b"{}"}, zipfile.ZIP_DEFLATED),
     "application/zip", {}, 413, "payload_too_large", "image.bin"),
    ("raw image without points", PNG, "image/png", {}, 400, "invalid_points", "at least one hold point"),
    ("unknown custom attribute", PNG, "image/png", {"X-Amzn-SageMaker-Custom-Attributes": "pts=1,2"}, 400,
     "bad_request", "unknown custom attribute"),
    ("bad custom points", PNG, "image/png", {"X-Amzn-SageMaker-Custom-Attributes": "points=1;2"}, 400,
     "invalid_points", "x,y"),
]


@pytest.mark.parametrize("name,body,content_type,headers,status,code,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx(tiny_server, name, body, content_type, headers, status, code, fragment) -> None:  # type: ignore[no-untyped-def]
    response = httpx.post(tiny_server.url + "/invocations", content=body,
                          headers={"Content-Type": content_type, **headers}, timeout=60)
    assert response.status_code == status, response.text
    data = response.json()
    assert data["error"] == code and fragment in data["message"], data
    assert data["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text


def test_routes_and_methods_answer_json(tiny_server) -> None:  # type: ignore[no-untyped-def]
    missing = httpx.get(tiny_server.url + "/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = httpx.get(tiny_server.url + "/invocations")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_nothing_is_disturbed_and_logs_hold_no_image_bytes(tiny_server) -> None:  # type: ignore[no-untyped-def]
    def good() -> httpx.Response:
        response = httpx.post(tiny_server.url + "/invocations", content=json.dumps(GOOD).encode(),
                              headers={"Content-Type": "application/json"}, timeout=60)
        assert response.status_code == 200, response.text
        return response

    before = good()
    bad = [
        (b"x" * (7 << 20), "application/json", 413),
        (b"{", "application/json", 400),
        (json.dumps({**GOOD, "points": [{"x": "a", "y": 1}]}).encode(), "application/json", 400),
        (PNG, "text/plain", 415),
    ]
    request_ids = []
    for body, content_type, status in bad:
        response = httpx.post(tiny_server.url + "/invocations", content=body, headers={"Content-Type": content_type},
                              timeout=60)
        assert response.status_code == status, response.text
        request_ids.append(response.json()["request_id"])
    after = good()
    assert after.json()["cache_hit"] and after.json()["mask_image_base64"] == before.json()["mask_image_base64"]
    logs = tiny_server.logs()
    assert B64[:64] not in logs and '"status": 500' not in logs
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    by_id = {r["request_id"]: r for r in records if r.get("message") == "request"}
    assert [by_id[rid]["status"] for rid in request_ids] == [status for _, _, status in bad]
