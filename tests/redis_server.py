"""A real ``redis-server`` on a free 127.0.0.1 port, for tests (one copy)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from serving.local_endpoint import free_port


@contextmanager
def redis_server(password: str | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Yield the process and its ``redis://`` URL (no password in it; ``password``: the AUTH
    password the server requires); stopped (killed if need be) on exit."""
    port = free_port()
    auth = ["--requirepass", password] if password else []
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", *auth],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait(timeout=20)
