"""The shared embedding tier behind the in-process cache: read-through, write-behind, encode once.

- ``load``: on a local miss, the entry another instance stored (same model identity), turned
  back into this engine's embedding value (exact float32 bytes; on a GPU engine, copied to the device).
- ``save``: after an encoder run the entry is written by one background thread, so the answer
  never waits for the store; at most ``MAX_PENDING_WRITES`` writes wait (others are dropped and
  counted): the entries are held by the local cache anyway, a dropped write costs another
  instance one encoder run.
- ``encode_once``: two instances receiving the same new photo at once run the encoder once:
  the first takes a short lock in the store (``SET NX PX``), the others poll it for at most
  ``lock_wait_ms`` and then read the entry, or encode anyway (deadline passed, holder died,
  store failed). A waiting instance costs one cheap ``EXISTS`` per ``LOCK_POLL_S``.

The stored entry includes the uploaded photo (needed for cut-outs of a follow-up by
``image_id``): an entry is 4 MiB of embedding plus the photo's file size.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from runtime.cache import CachedImage, EmbeddingCache, unknown_image_id
from runtime.manifest import Manifest
from runtime.shared_config import SharedCacheConfig, SharedCacheUnavailable, read_password
from runtime.shared_entry import SharedEntry, encoded_bytes, model_identity
from runtime.shared_store import Outcome, SharedStore
from runtime.tensors import EmbeddingValue, to_host

if TYPE_CHECKING:
    from runtime.engine import SamEngine

_LOG = logging.getLogger(__name__)

#: Writes that may wait for the background writer; beyond them a write is dropped.
MAX_PENDING_WRITES = 4
#: How often a waiter checks whether the instance holding the encode lock is done, seconds.
LOCK_POLL_S = 0.05


def identity_of(manifest: Manifest, engines: dict[str, str], provider: str) -> bytes:
    """The model identity (32 bytes) of the entries this engine may read and write.

    Manifest hash: the manifest's JSON (model type, export time, every graph's SHA-256).
    Weights hash: the graphs' SHA-256s plus the engine and device that run them, since another
    engine's float32 bytes are not the same bytes (parity stays exact across instances).
    """
    manifest_hex = hashlib.sha256(json.dumps(manifest.to_json(), sort_keys=True).encode()).hexdigest()
    graphs = sorted(f"{role}={model.sha256}" for role, model in manifest.models.items())
    running = f"{'|'.join(graphs)}|{engines['encoder']}|{provider}"
    return model_identity(manifest_hex, hashlib.sha256(running.encode()).hexdigest())


@dataclass(frozen=True)
class TierAnswer:
    """An entry and where it came from: ``outcome`` of the shared lookup (None: not looked up)."""

    entry: CachedImage | None
    outcome: Outcome | None


class SharedTier:
    """See the module docstring. ``from_host``: float32 1x256x64x64 host array -> the engine's value."""

    def __init__(self, store: SharedStore, embedding_shape: tuple[int, ...],
                 from_host: Callable[[NDArray[np.float32]], EmbeddingValue]) -> None:
        self.store = store
        self._shape = embedding_shape
        self._from_host = from_host
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shared-cache-writer")
        self._pending = threading.BoundedSemaphore(MAX_PENDING_WRITES)
        self._counts = {"dropped_writes": 0, "lock_waits": 0, "lock_wait_hits": 0, "encoded_anyway": 0}
        self._count_lock = threading.Lock()

    def load(self, image_id: str) -> TierAnswer:
        """The entry stored for ``image_id`` by any instance of this model, or none."""
        shared, outcome = self.store.get(image_id)
        if shared is None:
            return TierAnswer(None, outcome)
        host = np.frombuffer(shared.embedding, np.float32).reshape(self._shape).copy()
        return TierAnswer(CachedImage(image_id, self._from_host(host), host.nbytes, shared.orig_size_hw,
                                      shared.input_size_hw, shared.image_bytes), outcome)

    def encode_once(self, image_id: str, compute: Callable[[], CachedImage]) -> TierAnswer:
        """The stored entry, or ``compute()``'s (then saved): run once across instances where cheap."""
        found = self.load(image_id)
        if found.entry is not None or found.outcome == "error":
            return found if found.entry is not None else self._compute_and_save(image_id, compute, None, "error")
        token, held = self.store.try_lock(image_id)
        if token is not None:  # the holder before us may have written it between our look and our lock
            again = self.load(image_id)
            if again.entry is not None:
                self.store.unlock(image_id, token)
                return again
        if held:
            waited = self._wait_for_holder(image_id)
            if waited.entry is not None:
                return waited
            self._bump("encoded_anyway")
        return self._compute_and_save(image_id, compute, token, found.outcome)

    def _wait_for_holder(self, image_id: str) -> TierAnswer:
        """Poll the lock until it is released or ``lock_wait_ms`` passes, then look again."""
        self._bump("lock_waits")
        deadline = time.monotonic() + self.store.settings.lock_wait_ms / 1000
        while time.monotonic() < deadline and self.store.locked(image_id):
            time.sleep(LOCK_POLL_S)
        found = self.load(image_id)
        if found.entry is not None:
            self._bump("lock_wait_hits")
        return found

    def _compute_and_save(self, image_id: str, compute: Callable[[], CachedImage], token: str | None,
                          outcome: Outcome | None) -> TierAnswer:
        try:
            entry = compute()
        except BaseException:
            if token is not None:
                self.store.unlock(image_id, token)
            raise
        self.save(entry, token)
        return TierAnswer(entry, outcome)

    def save(self, entry: CachedImage, lock_token: str | None = None) -> None:
        """Write ``entry`` in the background (then release ``lock_token``); dropped when the writer is behind."""
        if not self._pending.acquire(blocking=False):
            self._bump("dropped_writes")
            if lock_token is not None:
                self.store.unlock(entry.image_id, lock_token)
            return
        self._writer.submit(self._write, entry, lock_token)

    def store_now(self, entry: CachedImage) -> int | None:
        """Write ``entry`` now, in the caller's thread (a warm request): the stored bytes, None when the store failed."""
        shared = _shared_entry(entry)
        return encoded_bytes(shared) if self.store.put(entry.image_id, shared) else None

    def _write(self, entry: CachedImage, lock_token: str | None) -> None:
        try:
            self.store.put(entry.image_id, _shared_entry(entry))
            if lock_token is not None:
                self.store.unlock(entry.image_id, lock_token)
        except Exception:  # noqa: BLE001 - a failed write is a later miss, never a failed request
            _LOG.exception("shared cache: writing image %s failed", entry.image_id)
        finally:
            self._pending.release()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued write is done (tests, benchmarks and shutdown)."""
        self._writer.submit(lambda: None).result(timeout=timeout_s)

    def _bump(self, name: str) -> None:
        with self._count_lock:
            self._counts[name] += 1

    def stats(self) -> dict[str, Any]:
        """The store's counters and state plus the tier's own (``/stats``'s ``shared_cache``)."""
        with self._count_lock:
            counts = dict(self._counts)
        return {"enabled": True, **self.store.stats(), **counts}


def _shared_entry(entry: CachedImage) -> SharedEntry:
    """``entry`` as the store holds it: the exact float32 1x256x64x64 bytes (C order), sizes and photo."""
    host = np.ascontiguousarray(to_host(entry.embedding), np.float32)
    return SharedEntry(host.tobytes(), entry.orig_size_hw, entry.input_size_hw, entry.image_bytes)


def open_shared_tier(config: SharedCacheConfig | None, engine: SamEngine) -> tuple[SharedTier | None, str | None]:
    """(the tier for ``engine``, or None and why it is off). Nothing here contacts the store but a
    Secrets Manager read: a store that is down at start-up is only a miss later, never a failed start."""
    if config is None:
        return None, "SAM_SHARED_CACHE_URL is not set"
    try:
        password = read_password(config)
    except SharedCacheUnavailable as exc:
        _LOG.error("shared cache off: %s", exc)
        return None, str(exc)
    identity = identity_of(engine.manifest, engine.backends, engine.provider)
    nbytes = int(np.prod(engine.embedding_shape)) * 4
    store = SharedStore(config.store, identity, nbytes, password)
    _LOG.info("shared cache on: %s (model identity %s)", _without_credentials(config.store.url), identity.hex()[:16])
    return SharedTier(store, engine.embedding_shape, engine.embedding_from_host), None


def _without_credentials(url: str) -> str:
    """``url`` with any user name removed, for logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"


def behind_tier(tier: SharedTier | None, image_id: str, compute: Callable[[], CachedImage],
                outcome: list[Outcome | None]) -> Callable[[], CachedImage]:
    """``compute`` behind ``tier`` (read first, encode once, write after); ``outcome`` gets the lookup's answer."""
    if tier is None:
        return compute

    def through() -> CachedImage:
        answer = tier.encode_once(image_id, compute)
        outcome.append(answer.outcome)
        assert answer.entry is not None
        return answer.entry
    return through


def cached_or_shared(cache: EmbeddingCache, tier: SharedTier | None, image_id: str
                     ) -> tuple[CachedImage, Outcome | None]:
    """``image_id``'s entry from ``cache``, else from ``tier`` (then cached locally), else 404 ``unknown_image_id``."""
    if tier is None:
        return cache.get(image_id), None
    outcome: list[Outcome | None] = []

    def from_tier() -> CachedImage:
        answer = tier.load(image_id)
        outcome.append(answer.outcome)
        if answer.entry is None:
            raise unknown_image_id(image_id)
        return answer.entry
    entry, _ = cache.get_or_compute(image_id, from_tier)
    return entry, (outcome[0] if outcome else None)
