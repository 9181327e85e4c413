"""The server process: ``serve`` runs uvicorn with an explicit lifecycle.

The socket opens first; the model loads in a thread (``/ping`` answers 503 until it is
loaded and warmed up, 200 after). SIGTERM marks the state as draining (``/ping`` 503),
lets in-flight requests finish within ``SAM_GRACEFUL_TIMEOUT_S`` and exits 0. A model that
fails to load stops the server with exit code 1.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import signal
import sys
import threading
import time
from typing import Any

import uvicorn

from runtime.manifest import load_manifest
from serving.app import ServerState, create_app
from serving.config import ServerSettings
from serving.connections import GuardedH11Protocol
from serving.logs import configure_logging
from serving.service import HoldService

log = logging.getLogger("sam.server")


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGTERM/SIGINT; return the process exit code."""
    configure_logging(settings.log_format)
    return_large_allocations_to_the_os()
    try:
        load_manifest(settings.model_dir, verify_checksums=False)  # fail fast, before opening the port
    except Exception as exc:  # noqa: BLE001 - reported and turned into the exit code
        log.error("cannot serve %s: %s", settings.model_dir, exc)
        print(f"error: cannot serve {settings.model_dir}: {exc}", file=sys.stderr, flush=True)
        return 1
    if settings.batch_max_payload_bytes > settings.max_body_bytes:
        log.warning("the batch transform's MaxPayloadInMB (%d bytes) is over SAM_MAX_BODY_BYTES (%d bytes): larger "
                    "records will be refused with 413", settings.batch_max_payload_bytes, settings.max_body_bytes)
    state = ServerState()
    server: uvicorn.Server

    def load() -> None:
        try:
            start = time.perf_counter()
            state.service = HoldService.from_model_dir(settings.model_dir, settings)
            state.ready.set()
            log.info("model ready", extra={"load_s": round(time.perf_counter() - start, 3),
                                           "provider": state.service.extractor.engine.provider,
                                           "engines": state.service.extractor.engine.backends,
                                           "precision": state.service.extractor.engine.precision})
        except Exception as exc:  # noqa: BLE001 - reported and turned into the exit code
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("cannot load the model: %s", state.load_error)
            print(f"error: cannot load the model from {settings.model_dir}: {exc}", file=sys.stderr, flush=True)
            server.should_exit = True

    def start_loading() -> None:
        threading.Thread(target=load, name="model-loader", daemon=True).start()

    app = create_app(settings, state, on_startup=start_loading)
    # No uvicorn limit_concurrency: its plain-text 503 hit /ping too. Connections are capped and
    # timed out by GuardedH11Protocol, invocations by the app's admission limit and deadlines.
    protocol = GuardedH11Protocol.configured(settings.header_timeout_s, settings.max_connections,
                                             settings.send_timeout_s)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                            timeout_graceful_shutdown=max(1, math.ceil(settings.graceful_timeout_s)), lifespan="on",
                            http=protocol, server_header=False,
                            ws="none")  # no WebSocket routes: an upgrade request is an HTTP request (JSON errors)
    server = _DrainingServer(config, state)
    # uvicorn re-raises SIGTERM after its graceful drain, under the handler found at start:
    # by then every request has finished, so that handler only lets serve() return its code.
    previous = signal.signal(signal.SIGTERM, _drained)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    code = 1 if state.load_error else 0
    leave_without_waiting_for_work(state, code)
    return code


def leave_without_waiting_for_work(state: ServerState, code: int) -> None:
    """Exit now if request work is still running after the drain deadline.

    Python would otherwise join the worker threads at exit and outlive SageMaker's 30 s between
    SIGTERM and SIGKILL (an encoder run can take most of a minute on a CPU); their answers could
    not be sent anyway. Queued work is cancelled; running work is abandoned with one log line.
    """
    workers = state.workers
    if workers is None:
        return
    workers.shutdown(wait=False)
    running = workers.stats().running
    if running:
        log.warning("exiting with %d request(s) still being worked on after the drain deadline", running)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


#: glibc's mallopt parameter for the mmap threshold.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 << 20


def return_large_allocations_to_the_os() -> None:
    """Serve every allocation of 4 MiB or more with its own mapping, returned to the OS when freed.

    glibc raises its mmap threshold (up to 32 MiB) after large blocks are freed, so Pillow's
    16 MiB image blocks and numpy's masks then come from the heap and stay resident: after one
    64 MP request the process kept about 250 MB it no longer used. With a fixed threshold (and
    the other fixes of issue 14) it keeps +25 MB. No-op without glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        if libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
            log.warning("mallopt(M_MMAP_THRESHOLD) was refused; freed image memory may stay resident")
    except (OSError, AttributeError):
        log.info("not glibc: the allocator's own release policy applies")


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
