"""A real headless Chromium (Debian's chromium + chromium-driver) driven by Selenium (tests only).

.ci/run installs both packages and sets SAM_REQUIRE_BROWSER=1, under which a missing browser
is a failure; elsewhere the browser tests skip, naming what is missing.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: What works on these machines (closed network, root, no GPU): /work/.library/env/machines/python.md.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1100")


def require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = f"headless browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing)"
        if os.environ.get("SAM_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def chrome(profile_dir: Path) -> Iterator[Any]:
    """A Chrome WebDriver on a fresh profile; console messages (``get_log("browser")``) and the
    DevTools network events (``sent_requests``) are kept."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def sent_requests(driver: Any, path: str) -> list[dict[str, Any]]:
    """The POST requests the page sent to ``path``, in order: DevTools' ``Network.requestWillBeSent``
    (``url``, ``headers``, ``postData`` when small enough for DevTools to keep)."""
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            request = message["params"]["request"]
            if request["method"] == "POST" and request["url"].endswith(path):
                requests.append(request)
    return requests


def wait_for(driver: Any, script: str, timeout_s: float = 90) -> Any:
    """The first truthy value of ``script`` in the page, polled every 0.1 s for at most ``timeout_s``."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(lambda d: d.execute_script(script))


def tap_at(driver: Any, canvas: Any, x: float, y: float) -> None:
    """Click at (x, y) photo pixels: Selenium offsets are CSS pixels from the element's centre."""
    from selenium.webdriver.common.action_chains import ActionChains

    width, height, pixels_w, pixels_h = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height, arguments[0].width, arguments[0].height]",
        canvas)
    ActionChains(driver).move_to_element_with_offset(
        canvas, x * width / pixels_w - width / 2, y * height / pixels_h - height / 2).click().perform()


def canvas_rgba(driver: Any, element_id: str) -> np.ndarray:
    """A canvas's pixels: uint8 HxWx4 RGBA."""
    url = driver.execute_script(f"return document.getElementById('{element_id}').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def assert_same_origin_only(driver: Any, origin: str) -> None:
    """Every resource the page loaded came from ``origin``, and the console has no error."""
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(origin) for name in resources), resources
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors  # CSP violations, failed loads and script errors land here
