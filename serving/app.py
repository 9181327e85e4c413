"""The Starlette app SageMaker talks to: routes, the request-log middleware, error answers.

Routes: ``GET /ping``, ``POST /invocations`` and the SageMaker Runtime path
``POST /endpoints/{name}/invocations`` (boto3 / AWS CLI with ``endpoint_url``), the old
``GET /healthz``, ``GET /openapi.json``, ``GET /stats`` and, for Batch Transform,
``GET /execution-parameters`` (``serving.batch``). ``/ping`` answers 503 until the
state holds a loaded service, and again while draining (``serving.server`` runs the
process lifecycle). Invocations call the service directly (parse, predict, serialise); the
handler functions in ``serving.handlers`` are the same steps for AWS's toolkit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from runtime.errors import ServiceError
from serving import metrics
from serving.batch import execution_parameters
from serving.body import read_body
from serving.config import ServerSettings
from serving.errors import NotReady, http_status
from serving.openapi import openapi_schema
from serving.pages import page_routes
from serving.responses import Prediction
from serving.service import HoldService, RequestContext, parse, serialise
from serving.workers import Admission, WorkerPool

log = logging.getLogger("sam.server")

REQUEST_ID_HEADER = "X-Request-Id"


class ServerState:
    """What the server must hold: the loaded service (or why it failed) and the drain flag."""

    def __init__(self) -> None:
        self.service: HoldService | None = None
        self.load_error: str | None = None
        self.draining = False
        self.ready = threading.Event()
        self.workers: WorkerPool | None = None


def create_app(settings: ServerSettings, state: ServerState, on_startup: Callable[[], None] | None = None) -> Starlette:
    """Build the ASGI app over ``state`` (which a loader thread fills)."""
    state.workers = WorkerPool(settings.worker_threads, settings.max_queued_requests)
    endpoints = _Endpoints(settings, state, state.workers,
                           Admission(settings.worker_threads + settings.max_queued_requests))
    app = Starlette(routes=endpoints.routes(),
                    exception_handlers={ServiceError: _service_error, HTTPException: _http_error},
                    lifespan=_lifespan(on_startup))
    app.add_middleware(_RequestLogMiddleware, settings=settings)
    return app


def _lifespan(on_startup: Callable[[], None] | None) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: runs ``on_startup`` (if any) once the server is up."""
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if on_startup is not None:
            on_startup()
        yield
    return lifespan


class _Endpoints:
    """The route handlers over one server's settings, state, worker pool and admission gate."""

    def __init__(self, settings: ServerSettings, state: ServerState, workers: WorkerPool,
                 admission: Admission) -> None:
        self.settings = settings
        self.state = state
        self.workers = workers
        self.admission = admission

    def routes(self) -> list[BaseRoute]:
        """Every route of the app, the people-facing pages last."""
        return [
            Route("/ping", self.ping, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/stats", self.stats, methods=["GET"]),
            Route("/openapi.json", self.schema, methods=["GET"]),
            Route("/execution-parameters", self.batch_parameters, methods=["GET"]),
            Route("/invocations", self.invoke, methods=["POST"]),
            Route("/endpoints/{endpoint_name}/invocations", self.invoke, methods=["POST"]),
            *page_routes(self.settings),  # /playground, /docs, /static: for people on the local endpoint
        ]

    async def ping(self, request: Request) -> Response:
        if self.state.ready.is_set() and not self.state.draining:
            return Response(status_code=200)
        return _error_response(NotReady("the model is loading" if not self.state.draining
                                        else "the server is shutting down"), request)

    async def healthz(self, request: Request) -> Response:
        if self.state.ready.is_set() and not self.state.draining:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "draining" if self.state.draining else "loading"}, status_code=503)

    async def stats(self, request: Request) -> Response:
        if self.state.service is None:
            return _error_response(NotReady("the model is loading"), request)
        service = self.state.service
        engine = service.extractor.engine
        return JSONResponse({
            "model_type": engine.manifest.model_type,
            "provider": engine.provider,
            "engines": engine.backends,
            "encoder_runs": engine.encoder_runs,
            "image_decodes": service.extractor.image_decodes,
            "precision": engine.precision,
            "cache": asdict(service.extractor.cache.stats()),
            "shared_cache": service.extractor.shared_stats(),
            "prompt_cache": service.extractor.prompts.stats(),
            "open_sessions": service.sessions.count(),
            "workers": {**asdict(self.workers.stats()), "admitted_requests": self.admission.admitted},
        })

    async def schema(self, request: Request) -> Response:
        return JSONResponse(openapi_schema(self.settings))

    async def batch_parameters(self, request: Request) -> Response:
        return JSONResponse(execution_parameters(self.settings))

    async def invoke(self, request: Request) -> Response:
        request_id = request.state.request_id
        state = self.state
        if not state.ready.is_set() or state.service is None or state.draining:
            raise NotReady("the model is not ready" if not state.draining else "the server is shutting down")
        with self.admission.admit():
            return await self._invoke(request, request_id, state.service)

    async def _invoke(self, request: Request, request_id: str, service: HoldService) -> Response:
        """Read the body, then parse, predict and serialise on a worker thread within the request deadline."""
        settings = self.settings
        deadline = time.monotonic() + settings.request_timeout_s
        body = await read_body(request, settings.max_body_bytes, min(settings.body_timeout_s, settings.request_timeout_s))
        context = _request_context(request, request_id, settings)
        content_type = request.headers.get("content-type")

        def work() -> tuple[bytes, str, dict[str, str], dict[str, Any]]:
            invocation = parse(body, content_type, context)
            prediction = service.predict(invocation)
            payload, media = serialise(prediction, context.accept, settings.max_response_bytes)
            return payload, media, prediction.headers, _log_facts(prediction)

        payload, media, headers, facts = await self.workers.run(work, max(0.0, deadline - time.monotonic()),
                                                                settings.request_timeout_s)
        request.state.facts = facts
        return Response(payload, media_type=media, headers=headers)


def _request_context(request: Request, request_id: str, settings: ServerSettings) -> RequestContext:
    """The request's headers and the server's answer limits, as the service reads them."""
    return RequestContext(
        request_id=request_id,
        custom_attributes=request.headers.get("x-amzn-sagemaker-custom-attributes"),
        session_header=request.headers.get("x-amzn-sagemaker-session-id"),
        accept=request.headers.get("accept"),
        max_zip_entries=settings.max_zip_entries,
        max_zip_member_bytes=settings.max_zip_member_bytes,
        max_response_bytes=settings.max_response_bytes,
        warm_requests=settings.warm_requests,
    )


def _log_facts(prediction: Prediction) -> dict[str, Any]:
    """What the request log (and the metrics record) says about one prediction; empty when it has no result."""
    result = prediction.result
    if prediction.warm is not None:  # a warm request: its outcome (and why it was refused)
        line = prediction.warm
        return {"image_id": line["image_id"], "warm": line["outcome"], "timings_ms": line.get("timings_ms", {}),
                **({"warm_refused": line["reason"]} if "reason" in line else {})}
    if result is None:
        return {}
    facts: dict[str, Any] = {"image_id": result.image_id, "cache_hit": result.cache_hit,
                             "clicks": len(result.prompts), "timings_ms": result.timings_ms,
                             "pixels": result.orig_size_hw[0] * result.orig_size_hw[1]}
    if result.shared_cache is not None:
        facts["shared_cache"] = result.shared_cache
    return facts


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return _error_response(exc, request)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": code, "message": f"{request.method} {request.url.path}: {exc.detail}",
                         "request_id": getattr(request.state, "request_id", None)}, status_code=exc.status_code)


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
        send_with_id = _sender_with_id(send, request_id, status)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error("internal error", exc_info=exc, extra={"request_id": request_id})
            if status.get("started"):
                raise
            await _internal_error_response(request_id)(scope, receive, send_with_id)
        finally:
            if scope["path"] != "/ping":
                self._record(scope, request_id, status["code"], round((time.perf_counter() - start) * 1000, 3))

    def _record(self, scope: Any, request_id: str, status_code: int, latency_ms: float) -> None:
        """Log the request line and, for a POST with metrics on, emit its EMF metrics record."""
        facts = scope["state"].get("facts", {})
        log.info("request", extra={"request_id": request_id, "method": scope["method"], "path": scope["path"],
                                   "status": status_code, "latency_ms": latency_ms, **facts})
        if self.settings.metrics_enabled and scope["method"] == "POST":
            metrics.emit(metrics.emf_record(self.settings.metrics_namespace, self.settings.endpoint_name,
                                            {**facts, "request_id": request_id}, latency_ms, status_code,
                                            variant=self.settings.variant_name))


def _sender_with_id(send: Any, request_id: str, status: dict[str, Any]) -> Callable[[Any], Awaitable[None]]:
    """Wrap ASGI ``send``: add the ``X-Request-Id`` header and note the status (and that it started) in ``status``."""
    async def send_with_id(message: Any) -> None:
        if message["type"] == "http.response.start":
            status["code"] = message["status"]
            status["started"] = True
            message.setdefault("headers", []).append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
        await send(message)
    return send_with_id


def _internal_error_response(request_id: str) -> Response:
    """The generic 500 body: no traceback, only the request id to quote."""
    return JSONResponse({"error": "internal_error", "message": f"internal error; quote request id {request_id}",
                         "request_id": request_id}, status_code=500)


def _error_response(exc: ServiceError, request: Request) -> Response:
    return JSONResponse({"error": exc.code, "message": exc.message,
                         "request_id": getattr(request.state, "request_id", None)}, status_code=http_status(exc))
