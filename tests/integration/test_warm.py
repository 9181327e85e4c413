"""Warm requests against real servers and a real redis-server (issue 28, part 3: pre-warm).

A warm request stores the photo's embedding in the shared tier and decodes nothing; its answer is
one report line: ``stored`` (with the bytes the store now holds), ``already_present``, or
``refused`` with the normal path's error code and status (a bad photo), ``shared_tier_off`` (no
tier: said, not pretended) or ``shared_tier_unavailable`` (a stalled store: nothing encoded).
"""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from runtime.shared_entry import read_entry
from synthetic.test_images import synthetic_image
from tests.integration.server import LocalEndpoint, log_records, start_server
from tests.redis_server import redis_server
from tests.reference import encode

#: Small enough that a 1600x1400 photo is over it: the 413 path.
MAX_PIXELS = 2_000_000
TIMEOUT_ENV = {"SAM_SHARED_CACHE_COMMAND_TIMEOUT_MS": "2000", "SAM_SHARED_CACHE_CONNECT_TIMEOUT_MS": "500"}


def _photo(seed: int, size_hw: tuple[int, int] = (480, 640)) -> bytes:
    return encode(synthetic_image(size_hw, seed=seed), "JPEG", quality=90)


def _warm_raw(server: LocalEndpoint, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/invocations", content=body, timeout=60,
                      headers={"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "warm=true",
                               **headers})


def _post_json(server: LocalEndpoint, document: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/invocations", content=json.dumps(document).encode(), timeout=60,
                      headers={"Content-Type": "application/json"})


def _runs(server: LocalEndpoint) -> int:
    return int(httpx.get(server.url + "/stats", timeout=10).json()["encoder_runs"])


def _stored_value(store: redis.Redis, image_id: str) -> tuple[bytes, bytes]:
    """(the model identity, the value) stored for ``image_id``: exactly one key holds it."""
    keys = store.keys(f"sam:emb:*:{image_id}")
    assert len(keys) == 1, keys
    key = keys[0].decode() if isinstance(keys[0], bytes) else str(keys[0])
    value = store.get(key)
    assert isinstance(value, bytes)
    return bytes.fromhex(key.split(":")[2]), value


@pytest.fixture(scope="module")
def store() -> Iterator[tuple[Any, str]]:
    with redis_server() as running:
        yield running


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, store: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[LocalEndpoint]:
    env = {"SAM_SHARED_CACHE_URL": store[1], "SAM_MAX_IMAGE_PIXELS": str(MAX_PIXELS), **TIMEOUT_ENV}
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("warm") / "server.log", env)
    yield running
    running.stop()


def test_a_warm_request_stores_the_embedding_once(server: LocalEndpoint, store: tuple[Any, str]) -> None:
    raw = redis.Redis.from_url(store[1])
    photo = _photo(71)
    runs = _runs(server)
    answer = _warm_raw(server, photo)
    assert answer.status_code == 200, answer.text
    line = answer.json()
    assert line["outcome"] == "stored" and line["encoder_ran"] is True
    assert line["original_size_hw"] == [480, 640] and "encoder_ms" in line["timings_ms"]
    identity, value = _stored_value(raw, line["image_id"])
    assert line["stored_bytes"] == len(value)  # written before the answer, not by the background writer
    entry = read_entry(identity, value)
    assert entry is not None and entry.image_bytes == photo and entry.orig_size_hw == (480, 640)
    assert _runs(server) == runs + 1
    assert answer.headers["x-amzn-sagemaker-custom-attributes"] == f"image_id={line['image_id']}&warm=stored"
    logged = [r for r in log_records(server) if r.get("image_id") == line["image_id"] and "warm" in r]
    assert [(r["warm"], r["status"]) for r in logged] == [("stored", 200)]

    again = _post_json(server, {"image_base64": base64.b64encode(photo).decode(), "warm": True})
    assert again.status_code == 200, again.text
    assert again.json()["outcome"] == "already_present" and again.json()["stored_bytes"] == 0
    assert again.json()["image_id"] == line["image_id"]
    assert _runs(server) == runs + 1


def test_a_garbage_entry_is_replaced_not_reported_present(server: LocalEndpoint, store: tuple[Any, str]) -> None:
    raw = redis.Redis.from_url(store[1])
    photo = _photo(72)
    first = _warm_raw(server, photo).json()
    assert first["outcome"] == "stored"
    key = raw.keys(f"sam:emb:*:{first['image_id']}")[0]
    raw.set(key, b"SAMEMB1\x00" + bytes(100))
    again = _warm_raw(server, photo).json()
    assert again["outcome"] == "stored", again
    identity, value = _stored_value(raw, first["image_id"])
    assert read_entry(identity, value) is not None and again["stored_bytes"] == len(value)
    assert again["encoder_ran"] is False  # the local cache had it: stored again without encoding


def test_bad_photos_are_refused_with_the_normal_paths_codes(server: LocalEndpoint) -> None:
    """The reason and status of a refused photo are what the same photo gets from a normal request."""
    runs = _runs(server)
    for body in (b"this is not a photo", _photo(73, (1400, 1600))):
        line = _warm_raw(server, body)
        assert line.status_code == 200, line.text
        normal = httpx.post(server.url + "/invocations", content=body, timeout=60,
                            headers={"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Custom-Attributes": "points=5,5"})
        assert (line.json()["outcome"], line.json()["reason"], line.json()["status"]) == \
            ("refused", normal.json()["error"], normal.status_code)
        assert line.json()["message"] == normal.json()["message"]
    assert [_warm_raw(server, b"x").json()["reason"], _warm_raw(server, _photo(73, (1400, 1600))).json()["reason"]] == \
        ["invalid_image", "payload_too_large"]
    assert _runs(server) == runs


def test_malformed_warm_requests_are_plain_errors(server: LocalEndpoint) -> None:
    photo = base64.b64encode(_photo(74)).decode()
    with_points = _post_json(server, {"image_base64": photo, "warm": True, "points": [{"x": 5, "y": 5}]})
    assert with_points.status_code == 400 and "no points" in with_points.json()["message"]
    by_id = _post_json(server, {"image_id": "0" * 32, "warm": True})
    assert by_id.status_code == 400 and "image_id" in by_id.json()["message"]
    as_png = _warm_raw(server, _photo(74), Accept="image/png")
    assert as_png.status_code == 406
    not_bool = _post_json(server, {"image_base64": photo, "warm": "yes"})
    assert not_bool.status_code == 400 and "warm must be true or false" in not_bool.json()["message"]


def test_without_a_shared_tier_warm_says_so(tiny_server: LocalEndpoint) -> None:
    runs = _runs(tiny_server)
    line = _warm_raw(tiny_server, _photo(75))
    assert line.status_code == 200, line.text
    assert (line.json()["outcome"], line.json()["reason"], line.json()["status"]) == ("refused", "shared_tier_off", 503)
    assert "SAM_SHARED_CACHE_URL is not set" in line.json()["message"]
    assert _runs(tiny_server) == runs


def test_zz_a_stalled_store_refuses_without_encoding(server: LocalEndpoint, store: tuple[Any, str]) -> None:
    """Last in the module: the store is stopped (SIGSTOP) and continued."""
    proc, _ = store
    runs = _runs(server)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        line = _warm_raw(server, _photo(76))
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert line.status_code == 200, line.text
    assert (line.json()["outcome"], line.json()["reason"], line.json()["status"]) == \
        ("refused", "shared_tier_unavailable", 503)
    assert _runs(server) == runs
    assert line.json()["stored_bytes"] == 0
