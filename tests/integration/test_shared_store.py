"""The shared tier against a real redis-server: hits, foreign models, stopped and stalled store."""

from __future__ import annotations

import os
import signal
import time

from runtime.shared_entry import SharedEntry, model_identity
from runtime.shared_store import SharedStore, SharedStoreSettings
from tests.redis_server import redis_server

_EMB = 16 * 4
_ENTRY = SharedEntry(bytes(range(_EMB)), (10, 20), (5, 10), b"photo")
_A = model_identity("a" * 64, "1" * 64)
_B = model_identity("b" * 64, "1" * 64)


def test_hit_is_exact_and_models_are_separate() -> None:
    with redis_server() as (_proc, url):
        store = SharedStore(SharedStoreSettings(url), _A, _EMB)
        assert store.get("img") is None
        assert store.put("img", _ENTRY)
        assert store.get("img") == _ENTRY
        other = SharedStore(SharedStoreSettings(url), _B, _EMB)
        assert other.get("img") is None
        other_entry = SharedEntry(bytes(_EMB), (1, 2), (1, 2), b"other")
        assert other.put("img", other_entry)
        assert store.get("img") == _ENTRY and other.get("img") == other_entry


def test_stopped_and_stalled_store_is_a_quick_miss() -> None:
    with redis_server() as (proc, url):
        store = SharedStore(SharedStoreSettings(url), _A, _EMB)
        assert store.put("img", _ENTRY)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert store.get("img") is None
            assert not store.put("img", _ENTRY)
            assert time.monotonic() - started < 5
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert store.get("img") == _ENTRY
        proc.kill()
        proc.wait(timeout=20)
        started = time.monotonic()
        assert store.get("img") is None
        assert time.monotonic() - started < 5


def test_garbage_under_our_key_is_a_miss() -> None:
    import redis

    with redis_server() as (_proc, url):
        store = SharedStore(SharedStoreSettings(url), _A, _EMB)
        assert store.put("img", _ENTRY)
        raw = redis.Redis.from_url(url)
        key = f"sam:emb:{_A.hex()}:img"
        value = raw.get(key)
        assert isinstance(value, bytes)
        raw.set(key, value[:-1] + bytes([value[-1] ^ 1]))
        assert store.get("img") is None
        raw.set(key, b"garbage")
        assert store.get("img") is None
