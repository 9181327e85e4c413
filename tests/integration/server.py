"""Start ``inference.py serve`` as a real process on 127.0.0.1 and wait for /ping (tests only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_server(model_dir: Path, log_path: Path, env: dict[str, str] | None = None,
                 wait_ready: bool = True, deadline_s: float = 120.0) -> RunningServer:
    """Start the server; when ``wait_ready``, poll /ping until 200 or fail at the deadline."""
    port = free_port()
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "inference.py"), "serve", "--model-dir", str(model_dir),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        env={**os.environ, "SAM_LOG_FORMAT": "json", **(env or {})},
    )
    server = RunningServer(process, f"http://127.0.0.1:{port}", log_path)
    if wait_ready:
        wait_for_ping(server, deadline_s)
    return server


def wait_for_ping(server: RunningServer, deadline_s: float = 120.0) -> list[int]:
    """Poll /ping until it answers 200; return every status seen (connection errors as 0)."""
    seen: list[int] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.logs()}")
        try:
            status = httpx.get(server.url + "/ping", timeout=2.0).status_code
        except httpx.TransportError:
            status = 0
        seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.05)
    raise TimeoutError(f"/ping did not answer 200 within {deadline_s} s:\n{server.logs()}")
