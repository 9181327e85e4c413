"""Run the endpoint as a local child process (``inference.py serve`` on 127.0.0.1) and wait for it.

Used by ``make demo``, the benchmarks and the integration tests: one way to pick a free
port, start the server with its log in a file, poll ``/ping`` against a deadline (never a
fixed sleep) and stop it with SIGTERM, as SageMaker does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INFERENCE = REPO / "inference.py"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalEndpoint:
    """A running ``inference.py serve`` process: its URL and the file its output goes to."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def logs(self) -> str:
        """Everything the server has written so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, deadline_s: float = 120.0) -> list[int]:
        """Poll ``/ping`` until it answers 200; return every status seen (0: no connection).

        Raises ``RuntimeError`` when the process exits first and ``TimeoutError`` at the deadline.
        """
        seen: list[int] = []
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.process.returncode}:\n{self.logs()}")
            status = ping_status(self.url)
            seen.append(status)
            if status == 200:
                return seen
            time.sleep(0.05)
        raise TimeoutError(f"/ping did not answer 200 within {deadline_s} s:\n{self.logs()}")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM (SageMaker's stop signal) and wait; returns the exit code. A process still alive
        after ``timeout_s`` is killed (as SageMaker's SIGKILL does) and ``TimeoutError`` raised."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.wait(10)
            raise TimeoutError(f"the server did not exit within {timeout_s:g} s of SIGTERM; killed") from exc


def ping_status(url: str, timeout_s: float = 2.0) -> int:
    """The status of ``GET {url}/ping``, or 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url + "/ping", timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def start_local_endpoint(model_dir: Path, log_path: Path, env: Mapping[str, str] | None = None,
                         wait_ready: bool = True, deadline_s: float = 120.0, port: int | None = None) -> LocalEndpoint:
    """Start ``inference.py serve --model-dir model_dir`` on 127.0.0.1 (a free port unless given).

    ``env`` is added to this process's environment. With ``wait_ready`` the call returns once
    ``/ping`` answers 200 (the model is loaded and warmed up).
    """
    port = port or free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(INFERENCE), "serve", "--model-dir", str(model_dir), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})},
        )
    endpoint = LocalEndpoint(process, f"http://127.0.0.1:{port}", log_path)
    if wait_ready:
        try:
            endpoint.wait_ready(deadline_s)
        except BaseException:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            raise
    return endpoint
