"""Start-up, readiness, load failures, SIGTERM draining and concurrency of the real server."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from synthetic.test_images import synthetic_image
from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO, free_port, log_records, start_server, wait_for_running_work
from tests.reference import encode


def _serve(model_dir: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "inference.py"), "serve", "--model-dir", str(model_dir),
                           "--host", "127.0.0.1", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **(env or {})})


def test_missing_model_directory_exits_non_zero(tmp_path: Path) -> None:
    result = _serve(tmp_path / "nowhere")
    assert result.returncode == 1
    assert "does not exist" in result.stderr and "Traceback" not in result.stdout + result.stderr


def test_model_that_fails_to_load_exits_non_zero_without_a_healthy_ping(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    data = bytearray((broken / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, wrong content: caught by the checksum during loading
    (broken / "encoder.onnx").write_bytes(bytes(data))
    server = start_server(broken, tmp_path / "s.log", wait_ready=False)
    seen: list[int] = []
    while server.process.poll() is None:
        try:
            seen.append(httpx.get(server.url + "/ping", timeout=1).status_code)
        except httpx.TransportError:
            seen.append(0)
        time.sleep(0.05)
    assert server.process.returncode == 1
    assert 200 not in seen
    assert "cannot load the model" in server.logs() and "SHA-256" in server.logs()


def test_bad_setting_names_the_variable(tiny_model_dir: Path) -> None:
    result = _serve(tiny_model_dir, {"SAM_CACHE_BYTES": "lots"})
    assert result.returncode == 2 and "SAM_CACHE_BYTES" in result.stderr


def test_sigterm_lets_the_request_in_flight_finish(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(tiny_model_dir, tmp_path / "s.log")
    image = encode(synthetic_image((2000, 3000), seed=61), "JPEG", quality=90)
    rng = np.random.default_rng(0)
    points = [{"x": float(rng.uniform(0, 3000)), "y": float(rng.uniform(0, 2000))} for _ in range(40)]
    body = json.dumps({"image_base64": base64.b64encode(image).decode(), "points": points,
                       "outputs": {"result_format": "webp"}}).encode()  # a 6 MP PNG cut-out is over 6 MiB
    outcome: dict[str, object] = {}

    def slow_request() -> None:
        outcome["response"] = httpx.post(server.url + "/invocations", content=body,
                                         headers={"Content-Type": "application/json"}, timeout=60)

    thread = threading.Thread(target=slow_request)
    started = time.monotonic()
    thread.start()
    wait_for_running_work(server, 1)
    server.process.send_signal(signal.SIGTERM)
    thread.join(60)
    response = outcome["response"]
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert response.json()["mask_image_base64"]
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 30
    messages = [(r.get("message"), r.get("path"), r.get("status")) for r in log_records(server)]
    drain = messages.index(("shutdown requested: draining in-flight requests", None, None))
    answered = messages.index(("request", "/invocations", 200))
    assert drain < answered, messages  # SIGTERM came while the request was in progress, and it was answered


def test_many_concurrent_clients_get_the_single_client_answers(tiny_server) -> None:  # type: ignore[no-untyped-def]
    images = [encode(synthetic_image((400, 600), seed=70 + i)) for i in range(3)]
    points = [{"x": 50.0, "y": 60.0}, {"x": 400.0, "y": 300.0}]

    def ask(image: bytes) -> bytes:
        body = json.dumps({"image_base64": base64.b64encode(image).decode(), "points": points,
                           "outputs": {"result_format": "none"}}).encode()
        response = httpx.post(tiny_server.url + "/invocations", content=body,
                              headers={"Content-Type": "application/json"}, timeout=120)
        assert response.status_code == 200, response.text
        return base64.b64decode(response.json()["mask_image_base64"])

    expected = [ask(image) for image in images]
    results: dict[int, list[bytes]] = {i: [] for i in range(3)}
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            for _ in range(3):
                results[index % 3].append(ask(images[index % 3]))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors
    for index in range(3):
        assert results[index] and all(mask == expected[index] for mask in results[index])


@pytest.mark.slow
def test_ping_is_503_until_vit_b_is_loaded_and_warm(vit_b_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(vit_b_model_dir, tmp_path / "s.log", wait_ready=False)
    try:
        early = None
        while early is None and server.process.poll() is None:
            try:
                early = httpx.post(server.url + "/invocations", content=b"{}",
                                   headers={"Content-Type": "application/json"}, timeout=5)
            except httpx.TransportError:
                time.sleep(0.05)
        assert early is not None and early.status_code == 503 and early.json()["error"] == "not_ready"
        seen = server.wait_ready(deadline_s=240)
        assert 503 in seen and seen[-1] == 200
        assert '"message": "model ready"' in server.logs()
    finally:
        assert server.stop() == 0


def test_request_timeout_answers_503_on_time(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(tiny_model_dir, tmp_path / "s.log", env={"SAM_REQUEST_TIMEOUT_S": "0.3"})
    try:
        image = encode(synthetic_image((2000, 3000), seed=62), "JPEG", quality=90)
        points = [{"x": 100.0 + 40 * i, "y": 100.0 + 30 * i} for i in range(40)]
        started = time.monotonic()
        response = httpx.post(server.url + "/invocations", timeout=60, json={
            "image_base64": base64.b64encode(image).decode(), "points": points})
        elapsed = time.monotonic() - started
        assert response.status_code == 503 and response.json()["error"] == "timeout"
        assert elapsed < 2.0, elapsed
        assert httpx.get(server.url + "/ping").status_code == 200  # the server carries on
    finally:
        assert server.stop() == 0


def test_sigterm_exit_is_bounded_by_the_drain_deadline(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Work still running at the drain deadline must not keep the process past SageMaker's SIGKILL."""
    server = start_server(tiny_model_dir, tmp_path / "s.log", env={"SAM_GRACEFUL_TIMEOUT_S": "2",
                                                                   "SAM_REQUEST_TIMEOUT_S": "600"})
    photo = wall_photo(8000, 8000, holds=30, seed=4, orientation=1).jpeg  # 64 noise masks at 64 MP: a minute here
    points = ";".join(f"{100 + 120 * i},{150 + 110 * i}" for i in range(64))
    headers = {"Content-Type": "image/jpeg",
               "X-Amzn-SageMaker-Custom-Attributes": f"points={points}&result_format=none&mask_format=png1"}
    thread = threading.Thread(target=lambda: _post_ignoring_errors(server.url, photo, headers))
    thread.start()
    wait_for_running_work(server, 1)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(30)
    waited = time.monotonic() - signalled
    thread.join(30)
    assert code == 0 and waited < 10, (code, waited)
    assert "still being worked on after the drain deadline" in server.logs()


def _post_ignoring_errors(url: str, body: bytes, headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(url + "/invocations", content=body, headers=headers, timeout=120)
