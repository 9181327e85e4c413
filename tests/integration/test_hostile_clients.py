"""A real server against hostile and broken clients: no 500, no hang, /ping always answers (issue 14)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from synthetic.test_images import synthetic_image
from tests.integration.server import LocalEndpoint, log_records, start_server
from tests.reference import encode
from tests.unit.test_hostile_inputs import _progressive_jpeg_with_scans

PNG = encode(synthetic_image((200, 300), seed=52))


def _address(server: LocalEndpoint) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _read_response(connection: socket.socket, timeout_s: float = 10.0) -> tuple[int, dict[str, object]]:
    """Read one HTTP response from a raw socket: (status, JSON body)."""
    connection.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, "the connection closed mid-body"
        body += chunk
    return int(head.split()[1]), json.loads(body)


def _misses(server: LocalEndpoint) -> int:
    return int(httpx.get(server.url + "/stats", timeout=5).json()["cache"]["misses"])


def _json_post(server: LocalEndpoint, document: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/invocations", content=json.dumps(document).encode(),
                      headers={"Content-Type": "application/json", **headers}, timeout=60)


@pytest.fixture(scope="module")
def guarded_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Short deadlines and a small pool, so stalls and timeouts show within seconds."""
    server = start_server(tiny_model_dir, tmp_path_factory.mktemp("guarded") / "s.log", env={
        "SAM_HEADER_TIMEOUT_S": "2", "SAM_BODY_TIMEOUT_S": "2", "SAM_WORKER_THREADS": "2",
        "SAM_MAX_QUEUED_REQUESTS": "2"})
    yield server
    server.stop()


def test_stalled_uploads_and_idle_sockets_never_block_ping(guarded_server: LocalEndpoint) -> None:
    address = _address(guarded_server)
    idle = [socket.create_connection(address) for _ in range(100)]
    stalled = []
    for _ in range(100):
        connection = socket.create_connection(address)
        connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 5000\r\n\r\n{\"points\": [")
        stalled.append(connection)
    try:
        started = time.monotonic()
        assert httpx.get(guarded_server.url + "/ping", timeout=2).status_code == 200
        assert time.monotonic() - started < 2.0
        answers: dict[int, int] = {}
        for connection in stalled:
            status, body = _read_response(connection)
            assert body["error"] in ("request_timeout", "overloaded"), body
            answers[status] = answers.get(status, 0) + 1
        assert answers == {408: 4, 503: 96}, answers  # 4 admitted (2 threads + 2 queued), the rest refused at once
        assert time.monotonic() - started < 8.0
        for connection in idle:
            connection.settimeout(10)
            assert connection.recv(100) == b""  # closed by the server: no request head within 2 s
        assert time.monotonic() - started < 10.0
    finally:
        for connection in idle + stalled:
            connection.close()
    assert _json_post(guarded_server, {"image_base64": base64.b64encode(PNG).decode(),
                                       "points": [{"x": 10, "y": 10}]}).status_code == 200


def test_a_connection_answered_before_its_body_is_closed_not_kept_reading(guarded_server: LocalEndpoint) -> None:
    """After an early 413, a client trickling body bytes must not hold the connection (no deadline applies)."""
    connection = socket.create_connection(_address(guarded_server))
    connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100000000\r\n\r\n{")
    status, body = _read_response(connection)
    assert status == 413 and body["error"] == "payload_too_large"
    answered = time.monotonic()
    closed = False
    while time.monotonic() - answered < 5:
        try:
            connection.sendall(b"x")
            connection.settimeout(0.2)
            closed = connection.recv(100) == b""
        except TimeoutError:
            continue
        except OSError:
            closed = True
        if closed:
            break
    connection.close()
    assert closed and time.monotonic() - answered < 2.0


def test_a_partial_request_head_gets_a_408(guarded_server: LocalEndpoint) -> None:
    connection = socket.create_connection(_address(guarded_server))
    connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-")
    status, body = _read_response(connection)
    connection.close()
    assert status == 408 and body["error"] == "request_timeout"


def test_a_client_vanishing_mid_body_is_a_client_error(guarded_server: LocalEndpoint) -> None:
    connection = socket.create_connection(_address(guarded_server))
    connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 100000\r\n\r\n{\"points\": [")
    time.sleep(0.3)
    connection.close()
    deadline = time.monotonic() + 10
    while not any(r.get("status") == 499 for r in log_records(guarded_server)):
        assert time.monotonic() < deadline, guarded_server.logs()[-3000:]
        time.sleep(0.05)
    records = log_records(guarded_server)
    assert not any(r.get("message") == "internal error" for r in records)
    request_id = next(r["request_id"] for r in records if r.get("status") == 499)
    metrics = next(r for r in records if "_aws" in r and r.get("request_id") == request_id)
    assert metrics["ClientErrors"] == 1 and metrics["ServerErrors"] == 0


def test_timed_out_work_keeps_its_thread_and_queued_work_never_runs(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(tiny_model_dir, tmp_path / "s.log", env={
        "SAM_WORKER_THREADS": "1", "SAM_REQUEST_TIMEOUT_S": "1", "SAM_MAX_QUEUED_REQUESTS": "8"})
    photos = [encode(synthetic_image((3000, 4000), seed=80 + i), "JPEG", quality=90) for i in range(4)]
    points = [{"x": 100.0 + 90 * i, "y": 100.0 + 60 * i} for i in range(40)]  # 40 full-size masks: seconds of work
    statuses: list[int] = []
    most_running = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most_running
        while not done.is_set():
            most_running = max(most_running, httpx.get(server.url + "/stats", timeout=5).json()["workers"]["running"])
            time.sleep(0.01)

    def send(photo: bytes) -> None:
        statuses.append(_json_post(server, {"image_base64": base64.b64encode(photo).decode(), "points": points}).status_code)

    try:
        watcher = threading.Thread(target=watch)
        watcher.start()
        senders = [threading.Thread(target=send, args=(photo,)) for photo in photos]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
        deadline = time.monotonic() + 60
        while httpx.get(server.url + "/stats", timeout=5).json()["workers"]["running"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        done.set()
        watcher.join(10)
        assert statuses == [503] * 4
        assert most_running == 1  # never more threads than configured, timed-out work included
        assert _misses(server) == 1  # only the first request's work ever started; the queued ones were cancelled
        assert httpx.get(server.url + "/ping", timeout=2).status_code == 200
    finally:
        done.set()
        assert server.stop() == 0
    assert '"status": 500' not in server.logs()


def test_a_jpeg_scan_bomb_costs_no_decode(tiny_server: LocalEndpoint) -> None:
    bomb = _progressive_jpeg_with_scans(1500, size=4000, flat=True)  # 16 MP: a minute of CPU if decoded
    assert len(bomb) < 6 << 20
    before = _misses(tiny_server)
    started = time.monotonic()
    response = httpx.post(tiny_server.url + "/invocations", content=bomb, timeout=60, headers={
        "Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "points=10,10"})
    assert response.status_code == 413 and "scans" in response.json()["message"]
    assert time.monotonic() - started < 3.0
    assert _misses(tiny_server) == before


@pytest.mark.parametrize("size_wh", [(1, 3000), (3000, 1), (1, 20000)])
def test_extreme_aspect_ratios_are_400_without_model_work(tiny_server: LocalEndpoint, size_wh: tuple[int, int]) -> None:
    image = encode(Image.new("RGB", size_wh, "gray"))
    before = _misses(tiny_server)
    response = _json_post(tiny_server, {"image_base64": base64.b64encode(image).decode(), "points": [{"x": 0, "y": 0}]})
    assert response.status_code == 400 and response.json()["error"] == "invalid_image"
    assert "aspect ratio" in response.json()["message"] and _misses(tiny_server) == before


def test_webp_beyond_its_limits_is_refused_before_model_work_and_the_advice_works(tiny_server: LocalEndpoint) -> None:
    image = encode(Image.new("RGB", (4000, 4000), "gray"))  # 16 MP: more than a WebP cut-out holds
    outputs = {"result_format": "webp", "mask_format": "png1"}
    body: dict[str, object] = {"image_base64": base64.b64encode(image).decode(), "points": [{"x": 2000, "y": 2000}],
                               "outputs": outputs}
    before = _misses(tiny_server)
    refused = _json_post(tiny_server, body)
    assert refused.status_code == 400 and refused.json()["error"] == "output_too_large"
    assert _misses(tiny_server) == before
    max_side = int(refused.json()["message"].split("set outputs.max_side to ")[1].split()[0])
    answered = _json_post(tiny_server, {**body, "outputs": {**outputs, "max_side": max_side}})
    assert answered.status_code == 200
    cut_out = Image.open(io.BytesIO(base64.b64decode(answered.json()["result_image_base64"])))
    assert cut_out.format == "WEBP" and max(cut_out.size) == max_side


def test_new_session_with_close_session_is_refused(tiny_server: LocalEndpoint) -> None:
    before = httpx.get(tiny_server.url + "/stats").json()["open_sessions"]
    response = _json_post(tiny_server, {"image_base64": base64.b64encode(PNG).decode(), "points": [{"x": 5, "y": 5}],
                                        "close_session": True}, **{"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
    assert response.status_code == 400 and "NEW_SESSION" in response.json()["message"]
    assert "x-amzn-sagemaker-new-session-id" not in response.headers
    assert httpx.get(tiny_server.url + "/stats").json()["open_sessions"] == before


def test_an_image_beside_a_session_wins_with_a_warning(tiny_server: LocalEndpoint) -> None:
    opened = _json_post(tiny_server, {"image_base64": base64.b64encode(PNG).decode(), "points": [{"x": 5, "y": 5}]},
                        **{"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
    session = opened.headers["x-amzn-sagemaker-new-session-id"].split(";")[0]
    other = encode(synthetic_image((100, 120), seed=53))
    answer = _json_post(tiny_server, {"image_base64": base64.b64encode(other).decode(), "points": [{"x": 5, "y": 5}]},
                        **{"X-Amzn-SageMaker-Session-Id": session})
    assert answer.status_code == 200 and answer.json()["image_id"] != opened.json()["image_id"]
    assert any("session stays bound" in w for w in answer.json()["warnings"])
    follow = _json_post(tiny_server, {"points": [{"x": 5, "y": 5}]}, **{"X-Amzn-SageMaker-Session-Id": session})
    assert follow.json()["image_id"] == opened.json()["image_id"]


def test_too_many_connections_get_our_json_503(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(tiny_model_dir, tmp_path / "s.log", env={"SAM_MAX_CONNECTIONS": "4",
                                                                   "SAM_HEADER_TIMEOUT_S": "2"})
    try:
        held = [socket.create_connection(_address(server)) for _ in range(4)]
        extra = socket.create_connection(_address(server))
        status, body = _read_response(extra)
        assert status == 503 and body["error"] == "overloaded"
        for connection in [*held, extra]:
            connection.close()
        deadline = time.monotonic() + 5
        while httpx.get(server.url + "/ping", timeout=2).status_code != 200:  # the held sockets are gone
            assert time.monotonic() < deadline
    finally:
        server.stop()


def test_content_length_with_chunked_closes_the_connection(guarded_server: LocalEndpoint) -> None:
    """CL+TE (RFC 9112 6.1): the answer ends the connection, so a smuggled request is never served."""
    connection = socket.create_connection(_address(guarded_server))
    connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                       b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    connection.settimeout(10.0)
    received = b""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    connection.close()
    assert received.startswith(b"HTTP/1.1 4") and received.count(b"HTTP/1.1 ") == 1
