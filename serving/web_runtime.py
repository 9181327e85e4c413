"""onnxruntime-web for /playground's browser mode: which files the page loads and where they live.

``make web-runtime`` (``scripts/build_web_runtime.py``) installs the npm package pinned in
``web/package-lock.json`` with ``npm ci`` and copies only ``WEB_RUNTIME_FILES`` into
``WEB_RUNTIME_DIR`` (gitignored, never committed; the serving image copies it with
``serving/``). The server serves them from there, same origin, no CDN. When they are missing
the page says so and keeps server mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: Where the page's copy of onnxruntime-web lives (served as /static/ort/...).
WEB_RUNTIME_DIR = Path(__file__).resolve().parent / "static" / "ort"
#: The URL path of WEB_RUNTIME_DIR.
WEB_RUNTIME_URL = "/static/ort"
#: The ES module the page imports: the WASM-only build (CPU kernels; no WebGPU/WebGL code).
WEB_RUNTIME_MODULE = "ort.wasm.min.mjs"
#: What the module loads: the Emscripten glue (also each thread's worker script) and the WASM
#: binary with SIMD and threads. Together with the module, all the page needs.
WEB_RUNTIME_FILES = (WEB_RUNTIME_MODULE, "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
#: Written by the build beside the files: {"package": ..., "version": ..., "sha256": {file: hex}}.
WEB_RUNTIME_RECORD = "onnxruntime-web.json"
#: The npm package.
WEB_RUNTIME_PACKAGE = "onnxruntime-web"


@dataclass(frozen=True)
class WebRuntimeStatus:
    """Whether the page can run the decoder: the files present, and the version the build recorded."""

    missing: tuple[str, ...]
    version: str | None

    @property
    def available(self) -> bool:
        return not self.missing


def web_runtime_status(directory: Path = WEB_RUNTIME_DIR) -> WebRuntimeStatus:
    """Which of ``WEB_RUNTIME_FILES`` (and the build's record) are missing from ``directory``."""
    missing = tuple(name for name in (*WEB_RUNTIME_FILES, WEB_RUNTIME_RECORD) if not (directory / name).is_file())
    version = None
    if WEB_RUNTIME_RECORD not in missing:
        try:
            version = str(json.loads((directory / WEB_RUNTIME_RECORD).read_text())["version"])
        except (OSError, ValueError, KeyError, TypeError):
            missing = (*missing, WEB_RUNTIME_RECORD)
    return WebRuntimeStatus(missing, version)
