"""GET /playground and GET /docs in a real headless Chromium against a real server process.

The playground test opens a phone photo (EXIF-rotated), taps two holds, and checks that the
taps land where clicked (upright photo pixels), that the overlay is the server's own mask
pixel for pixel, that the second tap reused the cached embedding (image_id, no encoder run),
and that the latency of each tap is shown. Screenshots go to out/test-artifacts/ (gitignored).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from serving.openapi import openapi_schema
from synthetic.wall_photo import wall_photo
from tests.integration.browser import assert_same_origin_only, canvas_rgba, chrome, sent_requests, tap_at, wait_for
from tests.integration.server import REPO

ARTIFACTS = REPO / "out" / "test-artifacts"
PHOTO = wall_photo(width=600, height=800, holds=12, seed=1234)  # stored rotated, EXIF orientation 6
TAPS = PHOTO.clicks(2)


def test_playground_taps_holds_with_the_servers_mask_and_the_cache(tiny_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    photo_path = tmp_path / "wall.jpg"
    photo_path.write_bytes(PHOTO.jpeg)
    with chrome(tmp_path / "profile") as driver:
        driver.get(tiny_server.url + "/playground")
        wait_for(driver, "return window.playground.browserMode !== null")  # the page's last layout change
        driver.find_element(By.ID, "file").send_keys(str(photo_path))
        assert wait_for(driver, "const c = document.getElementById('photo'); return c.width && [c.width, c.height]") == [600, 800]
        canvas = driver.find_element(By.ID, "photo")
        for count, (x, y) in enumerate(TAPS, start=1):
            tap_at(driver, canvas, x, y)
            wait_for(driver, f"return window.playground.history.length === {count} && !window.playground.busy")
        state = driver.execute_script("return {taps: window.playground.taps, history: window.playground.history}")
        overlay = canvas_rgba(driver, "overlay")
        cutout_size = driver.execute_script("const i = document.getElementById('cutout'); return [i.naturalWidth, i.naturalHeight]")
        rows = driver.execute_script(
            "return [...document.querySelectorAll('#latency tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
        warnings = driver.execute_script("return document.getElementById('warnings').textContent")
        sent = sent_requests(driver, "/invocations")
        assert_same_origin_only(driver, tiny_server.url)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "playground.png"))

    taps = [(tap["x"], tap["y"]) for tap in state["taps"]]
    assert np.allclose(taps, TAPS, atol=1.5), (taps, TAPS)  # upright photo pixels, x to the right, y down
    first, second = state["history"]
    assert first["cache_hit"] is False and "encoder_ms" in first["timings_ms"]
    assert second["cache_hit"] is True and "encoder_ms" not in second["timings_ms"]
    assert second["image_id"] == first["image_id"] and second["points"] == 2
    assert [request["headers"]["Content-Type"] for request in sent] == ["image/jpeg", "application/json"]
    follow_up = json.loads(sent[1]["postData"])  # the second tap sent the image_id and both taps, not the photo
    assert follow_up["image_id"] == first["image_id"] and "image_base64" not in follow_up
    assert [(p["x"], p["y"]) for p in follow_up["points"]] == taps

    answer = httpx.post(tiny_server.url + "/invocations", timeout=60, headers={"Accept": "image/png"}, json={
        "image_id": first["image_id"], "points": [{"x": x, "y": y} for x, y in taps],
        "outputs": {"mask_format": "png", "max_side": 2048}})
    assert answer.status_code == 200
    mask = np.asarray(Image.open(io.BytesIO(answer.content))) > 0
    assert 0 < mask.mean() < 1, "the server's mask must be neither empty nor full for this check to mean anything"
    assert overlay.shape[:2] == mask.shape == (800, 600)
    drawn = overlay[..., 3] > 0
    assert np.array_equal(drawn, mask), f"{np.count_nonzero(drawn != mask)} overlay pixels differ from the server's mask"
    assert cutout_size == [600, 800]
    assert [row[:3] for row in rows] == [["1", "server", "1"], ["2", "server", "2"]]
    assert rows[0][-1] == "miss" and rows[1][-1] == "hit"
    assert all(row[3].endswith(" ms") and int(row[3].split()[0]) > 0 for row in rows)
    assert "random weights" in warnings  # the tiny test model's answers say so


def test_docs_page_renders_the_openapi_schema(tiny_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    schema = openapi_schema()
    with chrome(tmp_path / "profile") as driver:
        driver.get(tiny_server.url + "/docs")
        sections = driver.execute_script(
            "return [...document.querySelectorAll('section.operation h2')].map(h => h.textContent)")
        text = driver.execute_script("return document.body.innerText")
        background = driver.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor")
        assert_same_origin_only(driver, tiny_server.url)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "docs.png"))
    expected = [f"{method.upper()} {path}" for path, methods in schema["paths"].items() for method in methods]
    assert sections == expected
    request = schema["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    for name in [*request["properties"], *request["properties"]["outputs"]["properties"], "X-Amzn-SageMaker-Custom-Attributes"]:
        assert name in text, name
    assert background == "rgb(43, 43, 43)"  # the stylesheet came through the Content-Security-Policy


def test_pages_are_self_contained_and_safe(tiny_server) -> None:  # type: ignore[no-untyped-def]
    for path in ("/playground", "/docs"):
        response = httpx.get(tiny_server.url + path, timeout=10)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "http://" not in response.text and "https://" not in response.text  # nothing from elsewhere
    script = httpx.get(tiny_server.url + "/static/playground.js", timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    missing = httpx.get(tiny_server.url + "/static/nope.js", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert json.loads(httpx.get(tiny_server.url + "/openapi.json", timeout=10).text)["paths"]


@pytest.mark.parametrize("path", ["/playground", "/docs"])
def test_pages_do_not_change_what_sagemaker_calls(tiny_server, path: str) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(tiny_server.url + "/ping", timeout=10).status_code == 200
    assert httpx.post(tiny_server.url + path, timeout=10).status_code == 405


def _csp_directives(policy: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


def test_the_playground_and_its_files_are_cross_origin_isolated(tiny_server, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """COOP same-origin + COEP require-corp on the page and on every file it loads (workers included),
    and a CSP that lets WebAssembly compile but not JavaScript eval, from this origin only."""
    from serving.web_runtime import WEB_RUNTIME_FILES, web_runtime_status

    files = {"/playground": "text/html", "/static/playground.js": "text/javascript",
             "/static/browser_decoder.mjs": "text/javascript", "/playground/browser-mode.json": "application/json",
             "/playground/decoder_web.onnx": "application/octet-stream"}
    if web_runtime_status().available:  # make web-runtime ran (CI runs it; the Chromium tests need it)
        files.update({f"/static/ort/{name}": "application/wasm" if name.endswith(".wasm") else "text/javascript"
                      for name in WEB_RUNTIME_FILES})
    for path, media in files.items():
        response = httpx.get(tiny_server.url + path, timeout=30)
        assert response.status_code == 200, (path, response.text[:200])
        assert response.headers["content-type"].split(";")[0] == media, path
        assert response.headers["cross-origin-opener-policy"] == "same-origin", path
        assert response.headers["cross-origin-embedder-policy"] == "require-corp", path
        assert response.headers["cross-origin-resource-policy"] == "same-origin", path
    policy = _csp_directives(httpx.get(tiny_server.url + "/playground", timeout=10).headers["content-security-policy"])
    assert policy["script-src"] == ["'self'", "'wasm-unsafe-eval'"] and policy["worker-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"] and policy["default-src"] == ["'self'"]
    sources = {value for values in policy.values() for value in values}
    assert sources == {"'self'", "'none'", "data:", "blob:", "'wasm-unsafe-eval'"}  # no 'unsafe-eval', no other origin
    docs = _csp_directives(httpx.get(tiny_server.url + "/docs", timeout=10).headers["content-security-policy"])
    assert docs["script-src"] == ["'self'"] and "worker-src" not in docs  # the docs page runs no WASM
    decoder = httpx.get(tiny_server.url + "/playground/decoder_web.onnx", timeout=30)
    assert decoder.content == (tiny_model_dir / "decoder_web.onnx").read_bytes()
