"""GET /playground and GET /docs in a real headless Chromium against a real server process.

The playground test opens a phone photo (EXIF-rotated), taps two holds, and checks that the
taps land where clicked (upright photo pixels), that the overlay is the server's own mask
pixel for pixel, that the second tap reused the cached embedding (image_id, no encoder run),
and that the latency of each tap is shown. Screenshots go to out/test-artifacts/ (gitignored).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from serving.openapi import openapi_schema
from synthetic.wall_photo import wall_photo
from tests.integration.browser import chrome, sent_requests
from tests.integration.server import REPO

ARTIFACTS = REPO / "out" / "test-artifacts"
PHOTO = wall_photo(width=600, height=800, holds=12, seed=1234)  # stored rotated, EXIF orientation 6
TAPS = PHOTO.clicks(2)


def _wait(driver: Any, script: str, timeout_s: float = 90) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def _tap(driver: Any, canvas: Any, x: float, y: float) -> None:
    """Click at (x, y) photo pixels: Selenium offsets are CSS pixels from the element's centre."""
    from selenium.webdriver.common.action_chains import ActionChains

    width, height, pixels_w, pixels_h = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height, arguments[0].width, arguments[0].height]",
        canvas)
    ActionChains(driver).move_to_element_with_offset(
        canvas, x * width / pixels_w - width / 2, y * height / pixels_h - height / 2).click().perform()


def _canvas_png(driver: Any, element_id: str) -> np.ndarray:
    url = driver.execute_script(f"return document.getElementById('{element_id}').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def _same_origin_only(driver: Any, origin: str) -> None:
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(origin) for name in resources), resources
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors  # CSP violations, failed loads and script errors land here


def test_playground_taps_holds_with_the_servers_mask_and_the_cache(tiny_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    photo_path = tmp_path / "wall.jpg"
    photo_path.write_bytes(PHOTO.jpeg)
    with chrome(tmp_path / "profile") as driver:
        driver.get(tiny_server.url + "/playground")
        driver.find_element(By.ID, "file").send_keys(str(photo_path))
        assert _wait(driver, "const c = document.getElementById('photo'); return c.width && [c.width, c.height]") == [600, 800]
        canvas = driver.find_element(By.ID, "photo")
        for count, (x, y) in enumerate(TAPS, start=1):
            _tap(driver, canvas, x, y)
            _wait(driver, f"return window.playground.history.length === {count} && !window.playground.busy")
        state = driver.execute_script("return {taps: window.playground.taps, history: window.playground.history}")
        overlay = _canvas_png(driver, "overlay")
        cutout_size = driver.execute_script("const i = document.getElementById('cutout'); return [i.naturalWidth, i.naturalHeight]")
        rows = driver.execute_script(
            "return [...document.querySelectorAll('#latency tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
        warnings = driver.execute_script("return document.getElementById('warnings').textContent")
        sent = sent_requests(driver, "/invocations")
        _same_origin_only(driver, tiny_server.url)
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
    assert [row[:2] for row in rows] == [["1", "1"], ["2", "2"]] and rows[0][-1] == "miss" and rows[1][-1] == "hit"
    assert all(row[2].endswith(" ms") and int(row[2].split()[0]) > 0 for row in rows)
    assert "random weights" in warnings  # the tiny test model's answers say so


def test_docs_page_renders_the_openapi_schema(tiny_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    schema = openapi_schema()
    with chrome(tmp_path / "profile") as driver:
        driver.get(tiny_server.url + "/docs")
        sections = driver.execute_script(
            "return [...document.querySelectorAll('section.operation h2')].map(h => h.textContent)")
        text = driver.execute_script("return document.body.innerText")
        background = driver.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor")
        _same_origin_only(driver, tiny_server.url)
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
