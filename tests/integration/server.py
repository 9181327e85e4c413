"""Real server processes for the integration tests (see ``serving.local_endpoint``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from serving.local_endpoint import REPO, LocalEndpoint, free_port, start_local_endpoint

__all__ = ["REPO", "LocalEndpoint", "free_port", "log_records", "start_server", "wait_for_running_work"]


def start_server(model_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                 wait_ready: bool = True, deadline_s: float = 120.0) -> LocalEndpoint:
    """Start the server with JSON logs; when ``wait_ready``, until /ping answers 200."""
    return start_local_endpoint(model_dir, log_path, {"SAM_LOG_FORMAT": "json", **(env or {})}, wait_ready, deadline_s)



def wait_for_running_work(server: LocalEndpoint, count: int, deadline_s: float = 60.0) -> None:
    """Poll ``/stats`` until ``count`` requests are being worked on (model work in progress)."""
    end = time.monotonic() + deadline_s
    running = -1
    while time.monotonic() < end:
        running = httpx.get(server.url + "/stats", timeout=5).json()["workers"]["running"]
        if running >= count:
            return
        time.sleep(0.01)
    raise TimeoutError(f"only {running} of {count} requests were in progress after {deadline_s} s")


def log_records(server: LocalEndpoint) -> list[dict[str, Any]]:
    """The server's JSON log lines, in order (EMF metric lines included)."""
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
