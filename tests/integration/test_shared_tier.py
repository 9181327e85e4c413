"""The tier over a real redis-server: exact round trip, one encode across two instances, and
a holder that never finishes (waiters encode anyway after their deadline)."""

from __future__ import annotations

import threading
import time

import numpy as np

from runtime.cache import CachedImage
from runtime.shared_entry import model_identity
from runtime.shared_store import SharedStore, SharedStoreSettings
from runtime.shared_tier import SharedTier
from tests.redis_server import redis_server

SHAPE = (1, 4, 8, 8)
IDENTITY = model_identity("c" * 64, "d" * 64)


def _tier(url: str, lock_wait_ms: int = 10_000) -> SharedTier:
    settings = SharedStoreSettings(url, command_timeout_ms=1000, lock_wait_ms=lock_wait_ms)
    return SharedTier(SharedStore(settings, IDENTITY, 4 * int(np.prod(SHAPE))), SHAPE, lambda host: host)


def _entry(image_id: str, seed: int) -> CachedImage:
    value = np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)
    return CachedImage(image_id, value, value.nbytes, (30, 40), (768, 1024), b"photo-bytes")


def test_an_entry_written_by_one_instance_is_read_exactly_by_another() -> None:
    with redis_server() as (_proc, url):
        writer, reader = _tier(url), _tier(url)
        assert reader.load("img").outcome == "miss"
        entry = _entry("img", 1)
        writer.save(entry)
        writer.flush()
        found = reader.load("img")
        assert found.outcome == "hit" and found.entry is not None
        assert found.entry.embedding.tobytes() == entry.embedding.tobytes()  # the same float32 bytes
        assert (found.entry.orig_size_hw, found.entry.input_size_hw, found.entry.image_bytes) == (
            (30, 40), (768, 1024), b"photo-bytes")


def test_two_instances_encoding_the_same_photo_at_once_encode_once() -> None:
    with redis_server() as (_proc, url):
        tiers = [_tier(url), _tier(url)]
        runs: list[int] = []
        answers: list[CachedImage | None] = [None, None]

        def encode() -> CachedImage:
            runs.append(1)
            time.sleep(0.5)  # an encoder run the other instance can overlap with
            return _entry("img", 2)

        def ask(index: int) -> None:
            answers[index] = tiers[index].encode_once("img", encode).entry
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(runs) == 1
        assert all(a is not None and a.embedding.tobytes() == _entry("img", 2).embedding.tobytes() for a in answers)
        assert sum(t.stats()["lock_wait_hits"] for t in tiers) == 1


def test_a_holder_that_never_finishes_delays_a_waiter_only_until_its_deadline() -> None:
    with redis_server() as (_proc, url):
        holder, waiter = _tier(url), _tier(url, lock_wait_ms=300)
        token, _ = holder.store.try_lock("img")  # an instance that took the lock and died
        assert token is not None
        started = time.monotonic()
        answer = waiter.encode_once("img", lambda: _entry("img", 3))
        assert answer.entry is not None and 0.25 < time.monotonic() - started < 5
        assert waiter.stats()["encoded_anyway"] == 1
