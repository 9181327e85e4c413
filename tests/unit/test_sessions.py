"""SageMaker sessions (``serving.sessions``) on a fake clock and a real embedding cache: no server, no sleep."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.cache import CachedImage, EmbeddingCache
from runtime.errors import BadRequest, CapacityExhausted
from serving.errors import SessionExpired, UnknownSession
from serving.sessions import NEW_SESSION, SessionStore, check_session_header

EMBEDDING_BYTES = 1000


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cached(cache: EmbeddingCache, image_id: str) -> None:
    entry = CachedImage(image_id, np.zeros(4, np.float32), EMBEDDING_BYTES, (10, 20), (512, 1024), b"photo")
    cache.get_or_compute(image_id, lambda: entry)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache() -> EmbeddingCache:
    cache = EmbeddingCache(max_bytes=100_000, max_pinned_bytes=3 * (EMBEDDING_BYTES + 5))
    for name in "abcd":
        cached(cache, name)
    return cache


def test_a_session_lives_exactly_its_ttl_and_then_expires_distinctly(cache: EmbeddingCache, clock: FakeClock) -> None:
    store = SessionStore(cache, ttl_s=60.0, max_sessions=4, clock=clock)
    session = store.open("a")
    assert cache.stats().pinned_entries == 1 and session.header_value().startswith(session.session_id + "; Expires=")
    clock.now += 59.999
    assert store.get(session.session_id) == session and store.count() == 1
    clock.now += 0.001  # expires at open + ttl
    with pytest.raises(SessionExpired):
        store.get(session.session_id)
    assert store.count() == 0 and cache.stats().pinned_entries == 0  # its embedding is released
    with pytest.raises(SessionExpired):
        store.close(session.session_id)
    with pytest.raises(UnknownSession):
        store.get("never-opened")


def test_close_releases_the_pin_and_forgets_the_session(cache: EmbeddingCache, clock: FakeClock) -> None:
    store = SessionStore(cache, ttl_s=60.0, max_sessions=4, clock=clock)
    first, second = store.open("a"), store.open("a")  # two sessions on one photo: two pins
    store.close(first.session_id)
    assert cache.stats().pinned_entries == 1
    store.close(second.session_id)
    assert cache.stats().pinned_entries == 0
    with pytest.raises(UnknownSession):
        store.close(first.session_id)
    with pytest.raises(UnknownSession):
        store.get(second.session_id)


def test_the_session_count_and_the_pinned_budget_are_bounded(cache: EmbeddingCache, clock: FakeClock) -> None:
    store = SessionStore(cache, ttl_s=60.0, max_sessions=2, clock=clock)
    store.open("a")
    clock.now += 30
    store.open("b")
    with pytest.raises(CapacityExhausted, match="2 sessions are open"):
        store.open("c")
    clock.now += 30  # the first expires: its place is free again, the second still counts
    store.open("c")
    assert store.count() == 2 and cache.stats().pinned_entries == 2
    roomy = SessionStore(cache, ttl_s=60.0, max_sessions=10, clock=clock)
    roomy.open("a")
    with pytest.raises(CapacityExhausted, match="pinned embeddings"):  # the cache's pinned budget: 3 entries
        roomy.open("d")
    assert store.count() + roomy.count() == 3


def test_bad_settings_and_session_headers_are_refused(cache: EmbeddingCache) -> None:
    for ttl_s, count in ((0.0, 1), (1.0, 0)):
        with pytest.raises(ValueError):
            SessionStore(cache, ttl_s=ttl_s, max_sessions=count)
    assert check_session_header(NEW_SESSION) == NEW_SESSION
    assert check_session_header("a-b--c9") == "a-b--c9"
    for bad in ("", "-a", "a-", "a b", "a_b", "é", "a" * 257):
        with pytest.raises(BadRequest):
            check_session_header(bad)
    assert check_session_header("a" * 256) == "a" * 256
