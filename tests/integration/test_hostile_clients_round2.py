"""Hostile clients, round 2 (issue 24), on a real server: a request costs what it is worth.

CPU is the server process's own CPU time (``/proc/PID/stat``: every thread's user + system
time, not wall time, which other sessions' load inflates); memory is its peak resident set
(``VmHWM``, reset before each request through ``/proc/PID/clear_refs``). ``/ping`` is polled
from a thread throughout and must answer every time within 2 s.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

import httpx
import pytest
from PIL import Image

from tests import hostile_files as bombs
from tests.integration.server import LocalEndpoint, log_records, start_server

CLICK = [{"x": 1.0, "y": 0.5}]  # inside every image here (the TIFF is 2x1)
CPU_BUDGET_S = 1.0
MEMORY_BUDGET_BYTES = 300 << 20
WIRE_LIMIT_BYTES = 100_000
SEND_TIMEOUT_S = 2.0
#: (name, the file) of each decode-cost bomb; every one travels in a zip under 100 KB.
BOMBS: list[tuple[str, Callable[[], bytes]]] = [
    ("jpeg_fill_bytes", lambda: bombs.jpeg_with_fill_bytes(8_000_000)),
    ("jpeg_empty_comments", lambda: bombs.jpeg_with_empty_comments(4_000_000)),
    ("png_ancillary_chunks", lambda: bombs.png_with_ancillary_chunks(1_400_000)),
    ("png_trailing_bytes", lambda: bombs.png_with_trailing_bytes(60 << 20)),
    ("gif_comment_sub_blocks", lambda: bombs.gif_with_comment_sub_blocks(8_000_000)),
    ("tiff_strip_offsets", lambda: bombs.tiff_with_strips(4_000_000)),
    ("bmp_rle_escapes", lambda: bombs.bmp_with_rle_escapes(15_000_000)),
    # one-colour 12 MP canvases (the file-size rule allows 98 MB): libwebp's demuxer kept a record per chunk
    ("webp_unknown_chunks", lambda: bombs.webp_with_unknown_chunks(8_000_000, (4000, 3000))),
    ("webp_animation_frames", lambda: bombs.webp_with_animation_frames(500_000, (4000, 3000))),
]


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    """Default limits but a short send deadline and a 256 MiB cache (128 MiB for sessions)."""
    endpoint = start_server(tiny_model_dir, tmp_path_factory.mktemp("round2") / "s.log", env={
        "SAM_SEND_TIMEOUT_S": str(SEND_TIMEOUT_S), "SAM_CACHE_BYTES": "256MiB", "SAM_WORKER_THREADS": "8"})
    yield endpoint
    endpoint.stop()


class PingWatch:
    """Polls ``/ping`` from a thread; ``slowest_s`` and ``failures`` say how it went."""

    def __init__(self, url: str) -> None:
        self.url, self.slowest_s, self.failures, self.polls = url, 0.0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                ok = httpx.get(self.url + "/ping", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            self.failures += not ok
            self.polls += 1
            self._stop.wait(0.2)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.failures == 0 and self.slowest_s < 2.0, (self.failures, self.polls, self.slowest_s)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_bytes(pid: int, key: str) -> int:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def _cost(server: LocalEndpoint, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, float, int]:
    """(answer, server CPU seconds, server peak RSS growth in bytes) of one request."""
    pid = server.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
    rss_before, cpu_before = _status_bytes(pid, "VmRSS"), _cpu_s(pid)
    answer = send()
    return answer, _cpu_s(pid) - cpu_before, _status_bytes(pid, "VmHWM") - rss_before


def _post_zip(server: LocalEndpoint, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/invocations", content=body, timeout=120,
                      headers={"Content-Type": "application/zip", **headers})


@pytest.mark.parametrize(("name", "build"), BOMBS, ids=[name for name, _ in BOMBS])
def test_a_small_request_cannot_buy_cpu_or_memory_with_file_structure(server: LocalEndpoint, name: str,
                                                                      build: Callable[[], bytes]) -> None:
    body = bombs.zipped_request(build(), CLICK)
    assert len(body) < WIRE_LIMIT_BYTES, len(body)
    with PingWatch(server.url):
        answer, cpu_s, memory = _cost(server, lambda: _post_zip(server, body))
    assert answer.status_code == 413 and answer.json()["error"] == "payload_too_large", answer.text[:300]
    assert answer.json()["request_id"]
    assert cpu_s < CPU_BUDGET_S and memory < MEMORY_BUDGET_BYTES, (cpu_s, memory >> 20)


def test_a_legitimate_request_is_served_while_every_worker_gets_a_bomb(server: LocalEndpoint) -> None:
    body = bombs.zipped_request(bombs.jpeg_with_fill_bytes(8_000_000), CLICK)
    legit = bombs.zipped_request(bombs.jpeg_with_fill_bytes(0), CLICK)
    with PingWatch(server.url), ThreadPoolExecutor(8) as pool:
        attacks = [pool.submit(_post_zip, server, body) for _ in range(8)]
        started = time.monotonic()
        answer = _post_zip(server, legit)
        assert answer.status_code == 200 and time.monotonic() - started < 15.0
        assert all(attack.result().status_code == 413 for attack in attacks)


def _flat_jpeg(size_wh: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size_wh, (90, 120, 30)).save(buffer, "JPEG", quality=50)
    return buffer.getvalue()


def test_an_answer_over_the_response_limit_is_refused_before_any_work(server: LocalEndpoint) -> None:
    """A flat 64 MP photo asking for uncompressed PNGs: a 427 MB answer before; now 413 at once."""
    body = bombs.zipped_request(_flat_jpeg((8000, 8000)), CLICK, outputs={"png_level": 0})
    assert len(body) < WIRE_LIMIT_BYTES, len(body)
    with PingWatch(server.url):
        answer, cpu_s, memory = _cost(server, lambda: _post_zip(server, body, Accept="application/json"))
    assert answer.status_code == 413, answer.text[:300]
    error = answer.json()
    assert error["error"] == "output_too_large" and "max_side to " in error["message"], error
    assert cpu_s < CPU_BUDGET_S and memory < MEMORY_BUDGET_BYTES, (cpu_s, memory >> 20)
    max_side = int(error["message"].split("max_side to ")[1].split()[0])
    fitted = bombs.zipped_request(_flat_jpeg((800, 800)), CLICK, outputs={"png_level": 0, "max_side": max_side})
    answer = _post_zip(server, fitted, Accept="application/json")
    assert answer.status_code == 200 and len(answer.content) <= 6 << 20


def _raw_exchange(server: LocalEndpoint, request: bytes, timeout_s: float = 10.0) -> bytes:
    """Send ``request`` on a new connection and read until the server closes it."""
    host, port = server.url.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(request)
        connection.settimeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            chunk = connection.recv(65536)
            if not chunk:
                return received
            received += chunk
    raise AssertionError(f"the connection stayed open: {received[:300]!r}")


MALFORMED = {
    "differing Content-Length": b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    "TE gzip, chunked": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "negative chunk size": b"POST /invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n",
    "NUL in a header": b"GET /ping HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "no Host": b"GET /ping HTTP/1.1\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "space before colon": b"GET /ping HTTP/1.1\r\nHost : x\r\n\r\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_protocol_errors_are_our_json_with_a_request_id(server: LocalEndpoint, name: str) -> None:
    received = _raw_exchange(server, MALFORMED[name])
    last = received.rsplit(b"HTTP/1.1 ", 1)[-1]  # the HTTP/2 preface is answered 404, then refused
    head, _, body = last.partition(b"\r\n\r\n")
    assert head.startswith(b"400 "), received[:300]
    error = json.loads(body)
    assert error["error"] == "bad_request" and error["message"].startswith("malformed HTTP request")
    assert error["request_id"] and f"x-request-id: {error['request_id']}".encode() in head


def test_a_websocket_upgrade_is_answered_as_json(server: LocalEndpoint) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(b"GET /invocations HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        connection.settimeout(10)
        received = b""
        while b"}" not in received:
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 "), received[:300]
    assert json.loads(body)["error"] == "method_not_allowed" and json.loads(body)["request_id"]


def _send_deadline_records(server: LocalEndpoint) -> list[dict[str, object]]:
    return [r for r in log_records(server) if r.get("message", "").startswith("answer not taken")]


def test_a_slow_reader_is_cut_off_at_the_send_deadline(server: LocalEndpoint) -> None:
    """An answer (a 5.5 MiB uncompressed mask) the client never reads: aborted at the deadline, memory freed."""
    image = _flat_jpeg((2400, 2400))
    head = (f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nAccept: image/png\r\n"
            f"X-Amzn-SageMaker-Custom-Attributes: points=10,10&png_level=0\r\nContent-Length: {len(image)}\r\n\r\n")
    host, port = server.url.removeprefix("http://").split(":")
    before = len(_send_deadline_records(server))
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.connect((host, int(port)))
        connection.sendall(head.encode() + image)
        connection.settimeout(60)
        first = connection.recv(512)  # the answer has started: from here the client reads nothing
        started = time.monotonic()
        assert first.startswith(b"HTTP/1.1 200 "), first
        length = int(first.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(_send_deadline_records(server)) == before and time.monotonic() - started < SEND_TIMEOUT_S + 20:
            time.sleep(0.1)
        cut_after_s = time.monotonic() - started
        received = len(first)
        try:
            while chunk := connection.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert SEND_TIMEOUT_S - 0.5 < cut_after_s < SEND_TIMEOUT_S + 5.0, cut_after_s
    assert received < length, (received, length)  # aborted: the rest was dropped, not kept for the client
    assert int(str(_send_deadline_records(server)[-1]["unsent_bytes"])) > 0


def test_padded_uploads_neither_evict_the_cache_nor_pin_the_session_budget(server: LocalEndpoint) -> None:
    """A 64x48 PNG with 60 MiB after IEND (~60 KB zipped) was charged 64 MiB: six evicted the 256 MiB cache,
    two used up the 128 MiB session budget. Now refused: other clients keep their image_id and sessions."""
    legit = bombs.zipped_request(bombs.jpeg_with_fill_bytes(0), CLICK)
    image_id = _post_zip(server, legit, Accept="application/json").json()["image_id"]
    padded = [bombs.zipped_request(bombs.png_with_trailing_bytes((60 << 20) + i), CLICK) for i in range(6)]
    assert all(len(body) < WIRE_LIMIT_BYTES for body in padded)
    answers = [_post_zip(server, body).status_code for body in padded]
    answers += [_post_zip(server, body, **{"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"}).status_code
                for body in padded[:2]]
    follow_up = httpx.post(server.url + "/invocations", json={"image_id": image_id, "points": CLICK,
                                                              "outputs": {"result_format": "none"}}, timeout=60)
    assert follow_up.status_code == 200 and follow_up.json()["cache_hit"], (answers, follow_up.text[:300])
    other = bombs.zipped_request(bombs.png_with_trailing_bytes(0), CLICK)
    session = _post_zip(server, other, **{"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
    assert session.status_code == 200, (answers, session.text[:300])
    assert answers == [413] * 8


def test_a_follow_up_on_a_file_padded_to_the_size_limit_decodes_nothing(server: LocalEndpoint) -> None:
    """A 138-byte follow-up by image_id re-decoded its padded file for the cut-out (4.0 s at 8 MB
    of padding); now the entry's kept pixels answer it: ``/stats`` ``image_decodes`` does not move,
    and the cut-out is the first answer's."""
    padded = bombs.png_padded_to_the_size_limit()
    first = _post_zip(server, bombs.zipped_request(padded, CLICK), Accept="application/json")
    assert first.status_code == 200, first.text[:300]
    decodes = httpx.get(server.url + "/stats", timeout=10).json()["image_decodes"]
    body = json.dumps({"image_id": first.json()["image_id"], "points": CLICK}).encode()
    assert len(body) < 150
    follow_up = httpx.post(server.url + "/invocations", content=body, timeout=60,
                           headers={"Content-Type": "application/json"})
    assert follow_up.status_code == 200 and follow_up.json()["cache_hit"], follow_up.text[:300]
    assert follow_up.json()["result_image_base64"] == first.json()["result_image_base64"]
    assert httpx.get(server.url + "/stats", timeout=10).json()["image_decodes"] == decodes


def test_an_mpo_whose_frames_lie_outside_the_file_costs_its_first_frame(server: LocalEndpoint) -> None:
    """Main already bounded this (Pillow decodes only the first frame; the MP index is one 64 KiB
    segment): the answer is the plain JPEG's, at the cost of a 64x48 request."""
    plain = _post_zip(server, bombs.zipped_request(bombs.jpeg_with_fill_bytes(0), CLICK), Accept="application/json")
    body = bombs.zipped_request(bombs.mpo_with_frames_outside_the_file(4092), CLICK)
    assert len(body) < WIRE_LIMIT_BYTES
    with PingWatch(server.url):
        answer, cpu_s, memory = _cost(server, lambda: _post_zip(server, body, Accept="application/json"))
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["mask_image_base64"] == plain.json()["mask_image_base64"]
    assert answer.json()["result_image_base64"] == plain.json()["result_image_base64"]
    assert cpu_s < CPU_BUDGET_S and memory < MEMORY_BUDGET_BYTES, (cpu_s, memory >> 20)
