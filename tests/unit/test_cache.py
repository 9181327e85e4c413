"""Embedding cache: byte-bounded true LRU, single flight, pinning, counters."""

from __future__ import annotations

import functools
import threading
import time

import numpy as np
import pytest

from runtime.cache import CachedImage, EmbeddingCache, image_id_for
from runtime.errors import CapacityExhausted, InvalidImage, UnknownImageId


def entry(key: str, nbytes: int = 1000) -> CachedImage:
    return CachedImage(key, np.zeros(1, np.float32), nbytes - 10, (10, 10), (10, 10), b"x" * 10)


def test_size_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        EmbeddingCache(0)


def test_lru_by_bytes_evicts_least_recently_used() -> None:
    cache = EmbeddingCache(3000)
    for key in "abc":
        cache.get_or_compute(key, functools.partial(entry, key))
    cache.get("a")  # refresh a: b is now the oldest
    cache.get_or_compute("d", lambda: entry("d"))
    with pytest.raises(UnknownImageId, match="evicted"):
        cache.get("b")
    assert cache.get("a").image_id == "a"
    stats = cache.stats()
    assert stats.evictions == 1 and stats.entries == 3 and stats.bytes_held == 3000


def test_large_entry_evicts_several_and_oversized_is_not_cached() -> None:
    cache = EmbeddingCache(3000)
    for key in "abc":
        cache.get_or_compute(key, functools.partial(entry, key))
    cache.get_or_compute("big", lambda: entry("big", 2500))
    assert cache.stats().evictions == 3 and cache.stats().bytes_held == 2500
    result, hit = cache.get_or_compute("huge", lambda: entry("huge", 5000))
    assert result.image_id == "huge" and not hit
    assert cache.stats().uncacheable == 1 and cache.stats().bytes_held == 2500


def test_hits_do_not_recompute() -> None:
    cache = EmbeddingCache(10_000)
    calls: list[int] = []

    def compute() -> CachedImage:
        calls.append(1)
        return entry("k")

    for _ in range(3):
        cache.get_or_compute("k", compute)
    assert calls == [1]
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 1)


def test_single_flight_under_threads() -> None:
    cache = EmbeddingCache(10_000)
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def slow() -> CachedImage:
        calls.append(1)
        started.set()
        release.wait(5)
        return entry("k")

    results: list[tuple[CachedImage, bool]] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_compute("k", slow))) for _ in range(8)]
    threads[0].start()
    started.wait(5)
    for t in threads[1:]:
        t.start()
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(5)
    assert calls == [1]
    assert len(results) == 8 and len({id(e) for e, _ in results}) == 1
    assert sorted(hit for _, hit in results) == [False] + [True] * 7
    assert cache.stats().coalesced == 7


def test_failed_computation_reaches_waiters_and_is_not_cached() -> None:
    """Single flight: the second caller waits for the first one's run and gets its error."""
    cache = EmbeddingCache(10_000)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def failing() -> CachedImage:
        calls.append(1)
        started.set()
        release.wait(5)
        raise InvalidImage("bad")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            cache.get_or_compute("k", failing)
        except InvalidImage as exc:
            errors.append(exc)

    first = threading.Thread(target=call)
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=call)
    second.start()
    deadline = time.monotonic() + 5
    while cache.stats().coalesced < 1:  # the second caller is waiting on the first one's run
        assert time.monotonic() < deadline, f"the second caller did not wait (compute ran {len(calls)} times)"
        time.sleep(0.005)
    release.set()
    first.join(5)
    second.join(5)
    assert len(calls) == 1 and len(errors) == 2 and errors[0] is errors[1]
    value, hit = cache.get_or_compute("k", lambda: entry("k"))
    assert not hit and value.image_id == "k"
    assert cache.stats().misses == 2 and cache.stats().coalesced == 1


def test_pinned_entries_survive_eviction_until_unpinned() -> None:
    cache = EmbeddingCache(2000, max_pinned_bytes=2000)
    cache.get_or_compute("a", lambda: entry("a"))
    cache.pin("a")
    cache.pin("a")
    for key in "bcd":
        cache.get_or_compute(key, functools.partial(entry, key))
    assert cache.get("a").image_id == "a"
    assert cache.stats().pinned_entries == 1
    cache.unpin("a")
    assert cache.get("a").image_id == "a"  # still pinned once
    cache.unpin("a")
    for key in "ef":
        cache.get_or_compute(key, functools.partial(entry, key))
    with pytest.raises(UnknownImageId):
        cache.get("a")


def test_pinned_budget_is_enforced() -> None:
    cache = EmbeddingCache(10_000, max_pinned_bytes=1500)
    for key in "ab":
        cache.get_or_compute(key, functools.partial(entry, key))
    cache.pin("a")
    with pytest.raises(CapacityExhausted, match="sessions"):
        cache.pin("b")
    with pytest.raises(UnknownImageId):
        cache.pin("zzz")


def test_image_id_is_content_hash() -> None:
    assert image_id_for(b"abc") == image_id_for(b"abc") != image_id_for(b"abd")
    assert len(image_id_for(b"")) == 32
