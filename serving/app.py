"""The Starlette app SageMaker talks to: routes, the request-log middleware, error answers.

Routes: ``GET /ping``, ``POST /invocations`` and the SageMaker Runtime path
``POST /endpoints/{name}/invocations`` (boto3 / AWS CLI with ``endpoint_url``), the old
``GET /healthz``, ``GET /openapi.json``, ``GET /stats`` and, for Batch Transform,
``GET /execution-parameters`` (``serving.batch``). ``/ping`` answers 503 until the
state holds a loaded service, and again while draining (``serving.server`` runs the
process lifecycle). Invocations call the service directly (parse, predict, encode); the
handler functions in ``serving.handlers`` are the same steps for AWS's toolkit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.errors import ServiceError
from serving import metrics
from serving.batch import execution_parameters
from serving.body import read_body
from serving.config import ServerSettings
from serving.errors import NotReady, http_status
from serving.openapi import openapi_schema
from serving.pages import page_routes
from serving.service import HoldService, RequestContext, encode, parse
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
    workers = state.workers = WorkerPool(settings.worker_threads, settings.max_queued_requests)
    admission = Admission(settings.worker_threads + settings.max_queued_requests)

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
            "encoder_runs": service.extractor.engine.encoder_runs,
            "precision": service.extractor.engine.precision,
            "cache": asdict(service.extractor.cache.stats()),
            "shared_cache": service.extractor.shared_stats(),
            "prompt_cache": service.extractor.prompts.stats(),
            "open_sessions": service.sessions.count(),
            "workers": {**asdict(workers.stats()), "admitted_requests": admission.admitted},
        })

    async def schema(request: Request) -> Response:
        return JSONResponse(openapi_schema(settings))

    async def batch_parameters(request: Request) -> Response:
        return JSONResponse(execution_parameters(settings))

    async def invoke(request: Request) -> Response:
        request_id = request.state.request_id
        if not state.ready.is_set() or state.service is None or state.draining:
            raise NotReady("the model is not ready" if not state.draining else "the server is shutting down")
        with admission.admit():
            return await _invoke(request, request_id, state.service)

    async def _invoke(request: Request, request_id: str, service: HoldService) -> Response:
        deadline = time.monotonic() + settings.request_timeout_s
        body = await read_body(request, settings.max_body_bytes, min(settings.body_timeout_s, settings.request_timeout_s))
        context = RequestContext(
            request_id=request_id,
            custom_attributes=request.headers.get("x-amzn-sagemaker-custom-attributes"),
            session_header=request.headers.get("x-amzn-sagemaker-session-id"),
            accept=request.headers.get("accept"),
            max_zip_entries=settings.max_zip_entries,
            max_zip_member_bytes=settings.max_zip_member_bytes,
            max_response_bytes=settings.max_response_bytes,
        )
        content_type = request.headers.get("content-type")

        def work() -> tuple[bytes, str, dict[str, str], dict[str, Any]]:
            invocation = parse(body, content_type, context)
            prediction = service.predict(invocation)
            payload, media = encode(prediction, context.accept, settings.max_response_bytes)
            facts: dict[str, Any] = {}
            if prediction.result is not None:
                facts = {"image_id": prediction.result.image_id, "cache_hit": prediction.result.cache_hit,
                         "clicks": len(prediction.result.prompts), "timings_ms": prediction.result.timings_ms,
                         "pixels": prediction.result.orig_size_hw[0] * prediction.result.orig_size_hw[1]}
                if prediction.result.shared_cache is not None:
                    facts["shared_cache"] = prediction.result.shared_cache
            return payload, media, prediction.headers, facts

        payload, media, headers, facts = await workers.run(work, max(0.0, deadline - time.monotonic()),
                                                           settings.request_timeout_s)
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
        Route("/execution-parameters", batch_parameters, methods=["GET"]),
        Route("/invocations", invoke, methods=["POST"]),
        Route("/endpoints/{endpoint_name}/invocations", invoke, methods=["POST"]),
        *page_routes(settings),  # /playground, /docs, /static: for people on the local endpoint
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
                                                    {**facts, "request_id": request_id}, latency_ms, status["code"],
                                                    variant=self.settings.variant_name))


def _error_response(exc: ServiceError, request: Request) -> Response:
    return JSONResponse({"error": exc.code, "message": exc.message,
                         "request_id": getattr(request.state, "request_id", None)}, status_code=http_status(exc))
