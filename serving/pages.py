"""Pages for people on the local endpoint: ``GET /playground`` (tap holds on a photo) and
``GET /docs`` (the OpenAPI schema as HTML), with their files under ``/static``.

Self-contained: every script and style comes from ``serving/static`` on this server (no CDN),
and a Content-Security-Policy keeps it so. SageMaker only calls ``/ping`` and
``/invocations``, so these routes are never reached there and change nothing.

The playground's browser mode runs ``decoder_web.onnx`` in the page with onnxruntime-web
(``serving.web_runtime``): ``GET /playground/browser-mode.json`` says whether it can (runtime
files present, the model's browser decoder, its mask threshold), ``GET /playground/decoder_web.onnx``
serves the decoder from the model directory. Every page and file is served cross-origin
isolated (COOP same-origin, COEP require-corp) so that WASM threads (SharedArrayBuffer) work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from runtime.errors import ModelLoadError
from runtime.manifest import BROWSER_ROLES, Manifest, load_manifest
from serving.api_docs import render_openapi
from serving.config import ServerSettings
from serving.openapi import openapi_schema
from serving.web_runtime import WEB_RUNTIME_DIR, WEB_RUNTIME_MODULE, WEB_RUNTIME_URL, web_runtime_status

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Only this origin: scripts, styles, fetches; images also from data: and blob: URLs (answers, the chosen photo).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
#: The playground's: the same, and WebAssembly compilation ('wasm-unsafe-eval', not 'unsafe-eval': no JS
#: eval) and same-origin workers (onnxruntime-web's threads run its own script as module workers).
PLAYGROUND_CSP = CONTENT_SECURITY_POLICY.replace("script-src 'self';", "script-src 'self' 'wasm-unsafe-eval'; "
                                                 "worker-src 'self';")
#: Cross-origin isolation (``crossOriginIsolated``, hence SharedArrayBuffer and WASM threads) for the
#: pages and every file they load; same-origin files need no CORP, which still keeps other sites out.
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
                     "Cross-Origin-Resource-Policy": "same-origin"}
_FILE_HEADERS = {**ISOLATION_HEADERS, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
_DOCS_HEADERS = {**_FILE_HEADERS, "Content-Security-Policy": CONTENT_SECURITY_POLICY}
_PLAYGROUND_HEADERS = {**_FILE_HEADERS, "Content-Security-Policy": PLAYGROUND_CSP}
#: Media types a module script and streaming WASM compilation insist on, whatever the OS's mime table says.
_MEDIA_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}
#: The browser decoder's URL, whichever file (fp32 or int8) the model offers.
WEB_DECODER_URL = "/playground/decoder_web.onnx"
WEB_DECODER_ROLE, WEB_DECODER_INT8_ROLE = BROWSER_ROLES


class PageFiles(StaticFiles):
    """``StaticFiles`` with the pages' headers (isolation, nosniff) and fixed script/WASM media types."""

    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media_type = _MEDIA_TYPES.get(Path(full_path).suffix)
        if media_type is not None:
            response.headers["content-type"] = media_type
        response.headers.update(_FILE_HEADERS)
        return response


async def playground(request: Request) -> Response:
    page = STATIC_DIR / "playground.html"
    if not page.is_file():  # model.tar.gz for AWS's framework containers carries only the Python code
        return JSONResponse({"error": "not_found", "message": "the playground's files are not installed here"},
                            status_code=404)
    return FileResponse(page, media_type="text/html; charset=utf-8", headers=_PLAYGROUND_HEADERS)


@dataclass(frozen=True)
class WebDecoder:
    """The browser decoder a model offers: ``path`` None with ``reason`` when it offers none."""

    path: Path | None
    reason: str
    mask_threshold: float | None = None
    precision: str = "fp32"


def web_role(manifest: Manifest) -> str:
    """decoder_web_int8 when the export recorded its parity as good enough to use, else decoder_web."""
    int8 = manifest.parity.get(WEB_DECODER_INT8_ROLE, {})
    return WEB_DECODER_INT8_ROLE if int8.get("used") is True and WEB_DECODER_INT8_ROLE in manifest.models \
        else WEB_DECODER_ROLE


def web_decoder_file(model_dir: Path) -> WebDecoder:
    """The model's browser decoder file (``web_role``), or why there is none."""
    try:
        manifest = load_manifest(model_dir, verify_checksums=False)
    except ModelLoadError as exc:
        return WebDecoder(None, f"the model directory has no readable manifest: {exc}")
    entry = manifest.models.get(web_role(manifest))
    if entry is None:
        return WebDecoder(None, "this model was exported without decoder_web.onnx: re-export it", manifest.mask_threshold)
    path = model_dir / entry.file
    if not path.is_file():
        return WebDecoder(None, f"{entry.file} is missing from the model directory", manifest.mask_threshold)
    return WebDecoder(path, "", manifest.mask_threshold, entry.precision)


def browser_mode(model_dir: Path, runtime_dir: Path) -> dict[str, object]:
    """What the page's browser mode needs to know: whether it can run, and from where."""
    runtime = web_runtime_status(runtime_dir)
    decoder = web_decoder_file(model_dir)
    missing = ", ".join(runtime.missing)
    return {
        "available": runtime.available and decoder.path is not None,
        "runtime": {"available": runtime.available, "version": runtime.version,
                    "module": f"{WEB_RUNTIME_URL}/{WEB_RUNTIME_MODULE}", "missing": list(runtime.missing),
                    "reason": "" if runtime.available else
                    f"onnxruntime-web is not installed on this server ({missing} missing): run make web-runtime"},
        "decoder": {"available": decoder.path is not None, "url": WEB_DECODER_URL, "reason": decoder.reason,
                    "mask_threshold": decoder.mask_threshold, "precision": decoder.precision},
    }


def browser_mode_routes(model_dir: Path, runtime_dir: Path) -> list[BaseRoute]:
    """``/playground/browser-mode.json`` and ``/playground/decoder_web.onnx``."""

    async def info(request: Request) -> Response:
        return JSONResponse(browser_mode(model_dir, runtime_dir), headers=_FILE_HEADERS)

    async def decoder(request: Request) -> Response:
        decoder = web_decoder_file(model_dir)
        if decoder.path is None:
            return JSONResponse({"error": "not_found", "message": decoder.reason}, status_code=404,
                                headers=_FILE_HEADERS)
        return FileResponse(decoder.path, media_type="application/octet-stream", headers=_FILE_HEADERS)

    return [Route("/playground/browser-mode.json", info, methods=["GET"]),
            Route(WEB_DECODER_URL, decoder, methods=["GET"])]


def page_routes(settings: ServerSettings, runtime_dir: Path = WEB_RUNTIME_DIR) -> list[BaseRoute]:
    """The routes to add to the app: the two pages, browser mode's and their static files. ``/docs``
    renders the schema of the server's own settings, as ``/openapi.json`` does. ``runtime_dir``: where
    browser mode looks for onnxruntime-web (served under /static/ort from ``STATIC_DIR``)."""
    page = render_openapi(openapi_schema(settings))

    async def docs(request: Request) -> Response:
        return HTMLResponse(page, headers=_DOCS_HEADERS)

    routes: list[BaseRoute] = [Route("/playground", playground, methods=["GET"]), Route("/docs", docs, methods=["GET"]),
                               *browser_mode_routes(settings.model_dir, runtime_dir)]
    if STATIC_DIR.is_dir():
        routes.append(Mount("/static", app=PageFiles(directory=STATIC_DIR), name="static"))
    return routes
