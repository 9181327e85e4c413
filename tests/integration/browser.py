"""A real headless Chromium (Debian's chromium + chromium-driver) driven by Selenium (tests only).

.ci/run installs both packages and sets SAM_REQUIRE_BROWSER=1, under which a missing browser
is a failure; elsewhere the browser tests skip, naming what is missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

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
