"""The Starlette app SageMaker talks to, and ``serve`` (uvicorn) with an explicit lifecycle.

Routes: ``GET /ping``, ``POST /invocations`` and the SageMaker Runtime path
``POST /endpoints/{name}/invocations`` (boto3 / AWS CLI with ``endpoint_url``), the old
``GET /healthz``, ``GET /openapi.json`` and ``GET /stats``. The model loads in a thread
after the socket is open: ``/ping`` answers 503 until it is loaded and warmed up, 200
after, 503 again while draining on SIGTERM. A model that fails to load stops the server
with a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.errors import BadRequest, NotReady, PayloadTooLarge, ServiceError
from runtime.manifest import load_manifest
from serving import handlers, metrics
from serving.config import ServerSettings
from serving.logs import configure_logging
from serving.openapi import openapi_schema
from serving.pages import page_routes
from serving.service import HoldService, RequestContext

log = logging.getLogger("sam.server")

REQUEST_ID_HEADER = "X-Request-Id"


class RequestTimeout(ServiceError):
    """The request did not finish within the configured time (its work may still complete)."""

    status_code = 503
    code = "timeout"


class ServerState:
    """What the server must hold: the loaded service (or why it failed) and the drain flag."""

    def __init__(self) -> None:
        self.service: HoldService | None = None
        self.load_error: str | None = None
        self.draining = False
        self.ready = threading.Event()


def create_app(settings: ServerSettings, state: ServerState, on_startup: Callable[[], None] | None = None) -> Starlette:
    """Build the ASGI app over ``state`` (which a loader thread fills)."""
    limiter = anyio.CapacityLimiter(settings.worker_threads)

    async def ping(request: Request) -> Response:
        if state.ready.is_set() and not state.draining:
            return Response(status_code=200)
        return _error_response(NotReady("the model is loading" if not state.draining else "the server is shutting down"),
                               request)

    async def healthz(request: Request) -> Response:
        if state.ready.is_set() and not state.draining:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "draining" if state.draining else "loading"}, status_code=503)

    async def stats(request: Request) -> Response:
        if state.service is None:
            return _error_response(NotReady("the model is loading"), request)
        service = state.service
        return JSONResponse({
            "model_type": service.extractor.engine.manifest.model_type,
            "provider": service.extractor.engine.provider,
            "engines": service.extractor.engine.engines,
            "cache": asdict(service.extractor.cache.stats()),
            "open_sessions": service.sessions.count(),
        })

    async def schema(request: Request) -> Response:
        return JSONResponse(openapi_schema())

    async def invoke(request: Request) -> Response:
        request_id = request.state.request_id
        if not state.ready.is_set() or state.service is None or state.draining:
            raise NotReady("the model is not ready" if not state.draining else "the server is shutting down")
        body = await _read_body(request, settings.max_body_bytes)
        context = RequestContext(
            request_id=request_id,
            custom_attributes=request.headers.get("x-amzn-sagemaker-custom-attributes"),
            session_header=request.headers.get("x-amzn-sagemaker-session-id"),
            accept=request.headers.get("accept"),
            max_zip_entries=settings.max_zip_entries,
            max_zip_member_bytes=settings.max_zip_member_bytes,
        )
        content_type = request.headers.get("content-type")
        service = state.service

        def work() -> tuple[bytes, str, dict[str, str], dict[str, Any]]:
            data = handlers.input_fn(body, content_type, context)
            prediction = handlers.predict_fn(data, service)
            payload, media = handlers.output_fn(prediction, context.accept)
            facts: dict[str, Any] = {}
            if prediction.result is not None:
                facts = {"image_id": prediction.result.image_id, "cache_hit": prediction.result.cache_hit,
                         "clicks": len(prediction.result.prompts), "timings_ms": prediction.result.timings_ms,
                         "pixels": prediction.result.orig_size_hw[0] * prediction.result.orig_size_hw[1]}
            return payload, media, prediction.headers, facts

        try:
            with anyio.fail_after(settings.request_timeout_s):
                # abandon_on_cancel: the timeout answers now; the thread finishes (and caches) alone.
                payload, media, headers, facts = await anyio.to_thread.run_sync(work, limiter=limiter,
                                                                                abandon_on_cancel=True)
        except TimeoutError as exc:
            raise RequestTimeout(
                f"the request did not finish within {settings.request_timeout_s:.0f} s; retry (its embedding may be cached)"
            ) from exc
        request.state.facts = facts
        return Response(payload, media_type=media, headers=headers)

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return _error_response(exc, request)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "message": f"{request.method} {request.url.path}: {exc.detail}",
                             "request_id": getattr(request.state, "request_id", None)}, status_code=exc.status_code)

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/stats", stats, methods=["GET"]),
        Route("/openapi.json", schema, methods=["GET"]),
        Route("/invocations", invoke, methods=["POST"]),
        Route("/endpoints/{endpoint_name}/invocations", invoke, methods=["POST"]),
        *page_routes(),  # /playground, /docs, /static: for people on the local endpoint
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        yield

    app = Starlette(routes=routes, exception_handlers={ServiceError: service_error, HTTPException: http_error},
                    lifespan=lifespan)
    app.add_middleware(_RequestLogMiddleware, settings=settings)
    return app


class _RequestLogMiddleware:
    """Assigns a request id (echoed as ``X-Request-Id``), logs each request but ``/ping``, and
    turns any unexpected exception into a generic 500 (traceback in the log, never in the body)."""

    def __init__(self, app: Any, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message.setdefault("headers", []).append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error("internal error", exc_info=exc, extra={"request_id": request_id})
            if status.get("started"):
                raise
            response = JSONResponse({"error": "internal_error", "message": f"internal error; quote request id {request_id}",
                                     "request_id": request_id}, status_code=500)
            await response(scope, receive, send_with_id)
        finally:
            if scope["path"] != "/ping":
                facts = scope["state"].get("facts", {})
                latency_ms = round((time.perf_counter() - start) * 1000, 3)
                log.info("request", extra={"request_id": request_id, "method": scope["method"], "path": scope["path"],
                                           "status": status["code"], "latency_ms": latency_ms, **facts})
                if self.settings.metrics_enabled and scope["method"] == "POST":
                    metrics.emit(metrics.emf_record(self.settings.metrics_namespace, self.settings.endpoint_name,
                                                    {**facts, "request_id": request_id}, latency_ms, status["code"]))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_response(exc: ServiceError, request: Request) -> Response:
    return JSONResponse({"error": exc.code, "message": exc.message,
                         "request_id": getattr(request.state, "request_id", None)}, status_code=exc.status_code)


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGTERM/SIGINT; return the process exit code."""
    configure_logging(settings.log_format)
    try:
        load_manifest(settings.model_dir, verify_checksums=False)  # fail fast, before opening the port
    except Exception as exc:  # noqa: BLE001 - reported and turned into the exit code
        log.error("cannot serve %s: %s", settings.model_dir, exc)
        print(f"error: cannot serve {settings.model_dir}: {exc}", flush=True)
        return 1
    state = ServerState()
    server: uvicorn.Server

    def load() -> None:
        try:
            start = time.perf_counter()
            state.service = HoldService.from_model_dir(settings.model_dir, settings)
            state.ready.set()
            log.info("model ready", extra={"load_s": round(time.perf_counter() - start, 3),
                                           "provider": state.service.extractor.engine.provider,
                                           "engines": state.service.extractor.engine.engines})
        except Exception as exc:  # noqa: BLE001 - reported and turned into the exit code
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("cannot load the model: %s", state.load_error)
            print(f"error: cannot load the model from {settings.model_dir}: {exc}", flush=True)
            server.should_exit = True

    def start_loading() -> None:
        threading.Thread(target=load, name="model-loader", daemon=True).start()

    app = create_app(settings, state, on_startup=start_loading)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=int(settings.graceful_timeout_s), lifespan="on",
                            limit_concurrency=max(64, settings.worker_threads * 8), server_header=False)
    server = _DrainingServer(config, state)
    # uvicorn re-raises SIGTERM after its graceful drain, under the handler found at start:
    # by then every request has finished, so that handler only lets serve() return its code.
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 1 if state.load_error else 0


def _drained(signum: int, frame: Any) -> None:
    log.info("drained; exiting", extra={"signal": signum})


class _DrainingServer(uvicorn.Server):
    """Marks the state as draining on SIGTERM/SIGINT so ``/ping`` turns 503 while requests finish."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self._state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._state.draining = True
        log.info("shutdown requested: draining in-flight requests", extra={"signal": sig})
        super().handle_exit(sig, frame)
