"""Two real server processes of one model sharing one real redis-server (issue 23).

Every follow-up by ``image_id`` is answered by either instance with the in-process mask, the
encoder runs once per photo across both (``/stats`` ``encoder_runs``); a stopped, stalled
(SIGSTOP) or lying store changes no answer; a second model on the same store never uses the
first's entries.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from sagemaker_client import SageMakerSAMClient
from synthetic.test_images import synthetic_image
from tests.integration.rehearsal_stack import wait_http
from tests.integration.server import LocalEndpoint, free_port, log_records, start_server
from tests.redis_server import redis_server
from tests.reference import decode_mask, encode, in_process_mask

POINTS = [(120.0, 200.0), (400.0, 90.0)]
TIMEOUT_ENV = {"SAM_SHARED_CACHE_COMMAND_TIMEOUT_MS": "2000", "SAM_SHARED_CACHE_CONNECT_TIMEOUT_MS": "500"}


def _photo(seed: int) -> bytes:
    return encode(synthetic_image((480, 640), seed=seed), "JPEG", quality=90)


def _ask(server: LocalEndpoint, photo: bytes | None = None, image_id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"points": [{"x": x, "y": y} for x, y in POINTS]}
    if photo is not None:
        body["image_base64"] = base64.b64encode(photo).decode()
    else:
        body["image_id"] = image_id
    return httpx.post(server.url + "/invocations", content=json.dumps(body).encode(),
                      headers={"Content-Type": "application/json"}, timeout=60)


def _stats(server: LocalEndpoint) -> dict[str, Any]:
    return httpx.get(server.url + "/stats", timeout=10).json()  # type: ignore[no-any-return]


def _runs(server: LocalEndpoint) -> int:
    return int(_stats(server)["encoder_runs"])


def _wait_written(server: LocalEndpoint, writes: int, deadline_s: float = 30.0) -> None:
    """Poll ``/stats`` until the instance's background writer stored ``writes`` entries."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if _stats(server)["shared_cache"]["writes"] >= writes:
            return
        time.sleep(0.02)
    raise TimeoutError(f"{server.url} wrote fewer than {writes} entries in {deadline_s} s")


@pytest.fixture(scope="module")
def store() -> Iterator[tuple[Any, str]]:
    with redis_server() as (proc, url):
        yield proc, url


@pytest.fixture(scope="module")
def pair(tiny_model_dir: Path, store: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[LocalEndpoint, LocalEndpoint]]:
    logs = tmp_path_factory.mktemp("shared")
    env = {"SAM_SHARED_CACHE_URL": store[1], **TIMEOUT_ENV}
    first = start_server(tiny_model_dir, logs / "a.log", env, wait_ready=False)
    second = start_server(tiny_model_dir, logs / "b.log", env, wait_ready=False)
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_a_follow_up_on_the_other_instance_is_answered_without_encoding(
        pair: tuple[LocalEndpoint, LocalEndpoint], tiny_model_dir: Path) -> None:
    first, second = pair
    photo = _photo(51)
    expected = in_process_mask(tiny_model_dir, photo, POINTS)
    runs = _runs(first) + _runs(second)
    opened = _ask(first, photo)
    assert opened.status_code == 200, opened.text
    _wait_written(first, 1)
    follow = _ask(second, image_id=opened.json()["image_id"])
    assert follow.status_code == 200, follow.text
    assert np.array_equal(decode_mask(follow.json()["mask_image_base64"]), expected)
    assert follow.json()["cache_hit"]
    assert _runs(first) + _runs(second) == runs + 1  # the photo was encoded once, by the first
    again = _ask(second, image_id=opened.json()["image_id"])  # now in the second's own cache
    assert np.array_equal(decode_mask(again.json()["mask_image_base64"]), expected)
    shared = _stats(second)["shared_cache"]
    assert shared["enabled"] and shared["available"] and shared["hits"] == 1
    emf = [r for r in log_records(second) if "SharedCacheHits" in r]
    assert [r["SharedCacheHits"] for r in emf] == [1]


def test_the_same_new_photo_at_once_is_encoded_once(pair: tuple[LocalEndpoint, LocalEndpoint],
                                                    tiny_model_dir: Path) -> None:
    first, second = pair
    photo = _photo(52)
    expected = in_process_mask(tiny_model_dir, photo, POINTS)
    runs = _runs(first) + _runs(second)
    answers: dict[str, httpx.Response] = {}
    threads = [threading.Thread(target=lambda s=s: answers.__setitem__(s.url, _ask(s, photo))) for s in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [answers[s.url].status_code for s in pair] == [200, 200]
    for server in pair:
        assert np.array_equal(decode_mask(answers[server.url].json()["mask_image_base64"]), expected)
    assert _runs(first) + _runs(second) == runs + 1


def test_stopped_stalled_or_lying_store_changes_no_answer(pair: tuple[LocalEndpoint, LocalEndpoint],
                                                          store: tuple[Any, str], tiny_model_dir: Path) -> None:
    first, second = pair
    proc, url = store
    raw = redis.Redis.from_url(url)
    photo = _photo(53)
    expected = in_process_mask(tiny_model_dir, photo, POINTS)
    opened = _ask(first, photo)
    _wait_written(first, _stats(first)["shared_cache"]["writes"])
    for key in raw.keys("sam:emb:*"):  # garbage where every entry was: a miss, then the photo is encoded
        raw.set(key, b"SAMEMB1\x00" + bytes(100))
    lied = _ask(second, photo)
    assert lied.status_code == 200 and np.array_equal(decode_mask(lied.json()["mask_image_base64"]), expected)
    assert _stats(second)["shared_cache"]["errors"] >= 1
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        stalled = _ask(second, _photo(54))
        assert stalled.status_code == 200
        assert time.monotonic() - started < 20  # a 2 s command timeout, then the normal encode
        assert httpx.get(second.url + "/ping", timeout=2).status_code == 200
        gone = _ask(first, image_id=opened.json()["image_id"])  # still in the first's own cache
        assert np.array_equal(decode_mask(gone.json()["mask_image_base64"]), expected)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert not _stats(second)["shared_cache"]["available"] or _stats(second)["shared_cache"]["errors"] >= 2


def test_a_second_model_never_uses_the_first_models_entries(
        pair: tuple[LocalEndpoint, LocalEndpoint], store: tuple[Any, str], tiny_model_dir_b: Path,
        tmp_path: Path) -> None:
    first, _ = pair
    photo = _photo(55)
    opened = _ask(first, photo)
    _wait_written(first, _stats(first)["shared_cache"]["writes"])
    other = start_server(tiny_model_dir_b, tmp_path / "b.log", {"SAM_SHARED_CACHE_URL": store[1], **TIMEOUT_ENV})
    try:
        unknown = _ask(other, image_id=opened.json()["image_id"])
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_image_id"
        runs = _runs(other)
        answer = _ask(other, photo)
        assert answer.status_code == 200 and not answer.json()["cache_hit"]
        assert _runs(other) == runs + 1
        expected = in_process_mask(tiny_model_dir_b, photo, POINTS)
        assert np.array_equal(decode_mask(answer.json()["mask_image_base64"]), expected)
    finally:
        other.stop()


def test_two_instances_behind_the_rehearsal_answer_every_follow_up(
        pair: tuple[LocalEndpoint, LocalEndpoint], tiny_model_dir: Path, tmp_path: Path) -> None:
    """The issue's "done when": one variant with two containers behind the data plane, one store."""
    first, second = pair
    port = free_port()
    plane = subprocess.Popen([sys.executable, "-m", "rehearsal.data_plane", "--variant", f"Primary={first.url}",
                              "--variant", f"Primary={second.url}", "--routing", "static", "--seed", "5",
                              "--port", str(port)], stdout=(tmp_path / "plane.log").open("wb"),
                             stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items()
                                                             if not k.startswith("AWS_ENDPOINT_URL")})
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", plane)
        client = SageMakerSAMClient("sam-climbing-endpoint", "us-east-1", f"http://127.0.0.1:{port}")
        photo = _photo(56)
        before = {s.url: (_runs(s), _stats(s)["shared_cache"]["hits"]) for s in pair}
        opened = client.extract(photo, POINTS)
        for server in pair:  # whichever instance encoded it, its write is done before the follow-ups
            _wait_written(server, _stats(server)["shared_cache"]["writes"])
        for index in range(8):
            clicks = [POINTS[index % 2]]
            follow = client.follow_up_of(opened, clicks)
            assert not follow.resent_photo and follow.mask_image is not None
            assert np.array_equal(decode_mask(follow.mask_image), in_process_mask(tiny_model_dir, photo, clicks))
        after = {s.url: (_runs(s), _stats(s)["shared_cache"]["hits"]) for s in pair}
        assert sum(after[u][0] - before[u][0] for u in after) == 1  # encoded once across both instances
        assert sum(after[u][1] - before[u][1] for u in after) == 1  # the other instance read it once, then held it
    finally:
        plane.terminate()
        plane.wait(10)
