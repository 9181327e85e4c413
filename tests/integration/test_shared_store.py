"""The shared tier's store against a real redis-server: hits, foreign models, stopped, stalled
and lying store, the encode lock, and one log line per state change."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest
import redis

from runtime.shared_entry import SharedEntry, model_identity
from runtime.shared_store import SharedStore, SharedStoreSettings
from tests.redis_server import redis_server

_EMB = 16 * 4
_ENTRY = SharedEntry(bytes(range(_EMB)), (10, 20), (5, 10), b"photo")
_A = model_identity("a" * 64, "1" * 64)
_B = model_identity("b" * 64, "1" * 64)


def _store(url: str, identity: bytes = _A, retry_after_ms: int = 0) -> SharedStore:
    return SharedStore(SharedStoreSettings(url, command_timeout_ms=300, retry_after_ms=retry_after_ms), identity, _EMB)


def test_hit_is_exact_and_models_are_separate() -> None:
    with redis_server() as (_proc, url):
        store = _store(url)
        assert store.get("img") == (None, "miss")
        assert store.put("img", _ENTRY)
        assert store.get("img") == (_ENTRY, "hit")
        other = _store(url, _B)
        assert other.get("img") == (None, "miss")
        other_entry = SharedEntry(bytes(_EMB), (1, 2), (1, 2), b"other")
        assert other.put("img", other_entry)
        assert store.get("img") == (_ENTRY, "hit") and other.get("img") == (other_entry, "hit")
        assert 0 < redis.Redis.from_url(url).ttl(f"sam:emb:{_A.hex()}:img") <= 3600
        counters = store.stats()
        assert (counters["hits"], counters["misses"], counters["writes"]) == (2, 1, 1)


def test_stopped_and_stalled_store_is_a_quick_miss(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "runtime.shared_store")
    with redis_server() as (proc, url):
        store = _store(url)
        assert store.put("img", _ENTRY)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert store.get("img") == (None, "error")
            assert not store.put("img", _ENTRY)
            assert store.try_lock("img") == (None, False)
            assert time.monotonic() - started < 5
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert store.get("img") == (_ENTRY, "hit")
        proc.kill()
        proc.wait(timeout=20)
        started = time.monotonic()
        assert store.get("img") == (None, "error")
        assert store.get("img") == (None, "error")
        assert time.monotonic() - started < 5
    changes = [r.getMessage() for r in caplog.records]
    assert len(changes) == 3, changes  # unavailable, available again, unavailable: once per change
    assert "available again" in changes[1]


def test_a_failed_store_is_not_asked_again_for_the_retry_period() -> None:
    with redis_server() as (proc, url):
        store = _store(url, retry_after_ms=60_000)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            assert store.get("img") == (None, "error")
            started = time.monotonic()
            for _ in range(20):
                assert store.get("img") == (None, "error")
            assert time.monotonic() - started < 0.2  # 20 lookups, none waited for the 300 ms timeout
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert store.stats()["skipped"] == 20


def test_garbage_or_foreign_value_under_our_key_is_an_error() -> None:
    with redis_server() as (_proc, url):
        store = _store(url)
        assert store.put("img", _ENTRY)
        raw = redis.Redis.from_url(url)
        key = f"sam:emb:{_A.hex()}:img"
        value = raw.get(key)
        assert isinstance(value, bytes)
        raw.set(key, value[:-1] + bytes([value[-1] ^ 1]))
        assert store.get("img") == (None, "error")
        raw.set(key, b"garbage")
        assert store.get("img") == (None, "error")
        foreign = _store(url, _B)
        assert foreign.put("img", _ENTRY)
        foreign_value = raw.get(f"sam:emb:{_B.hex()}:img")
        assert isinstance(foreign_value, bytes)
        raw.set(key, foreign_value)  # another model's entry under our key
        assert store.get("img") == (None, "error")
        assert store.stats()["errors"] == 3


def test_encode_lock_is_exclusive_and_released_only_by_its_holder() -> None:
    with redis_server() as (_proc, url):
        first, second = _store(url), _store(url)
        token, held = first.try_lock("img")
        assert token is not None and not held
        assert second.try_lock("img") == (None, True)
        assert second.locked("img")
        second.unlock("img", "not-the-token")
        assert second.locked("img")
        first.unlock("img", token)
        assert not second.locked("img")
