"""Pages for people on the local endpoint: ``GET /playground`` (tap holds on a photo) and
``GET /docs`` (the OpenAPI schema as HTML), with their files under ``/static``.

Self-contained: every script and style comes from ``serving/static`` on this server (no CDN),
and a Content-Security-Policy keeps it so. SageMaker only calls ``/ping`` and
``/invocations``, so these routes are never reached there and change nothing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from serving.api_docs import render_openapi
from serving.config import ServerSettings
from serving.openapi import openapi_schema

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Only this origin: scripts, styles, fetches; images also from data: and blob: URLs (answers, the chosen photo).
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache"}


async def playground(request: Request) -> Response:
    page = STATIC_DIR / "playground.html"
    if not page.is_file():  # model.tar.gz for AWS's framework containers carries only the Python code
        return JSONResponse({"error": "not_found", "message": "the playground's files are not installed here"},
                            status_code=404)
    return FileResponse(page, media_type="text/html; charset=utf-8", headers=_HEADERS)


def page_routes(settings: ServerSettings) -> list[BaseRoute]:
    """The routes to add to the app: the two pages and their static files. ``/docs`` renders the
    schema of the server's own settings, as ``/openapi.json`` does."""
    page = render_openapi(openapi_schema(settings))

    async def docs(request: Request) -> Response:
        return HTMLResponse(page, headers=_HEADERS)

    routes: list[BaseRoute] = [Route("/playground", playground, methods=["GET"]), Route("/docs", docs, methods=["GET"])]
    if STATIC_DIR.is_dir():
        routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"))
    return routes
