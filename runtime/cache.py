"""A byte-bounded LRU cache of image embeddings, keyed by the image content's hash.

- True LRU (``cachetools.LRUCache``: a hit refreshes), bounded by bytes via ``getsizeof``.
- Single flight: concurrent requests for the same new image wait for one encoder run.
- Pinning: stateful sessions pin their entry, which then survives LRU eviction while the
  session lives; pinned bytes have their own bound.
- The lock guards the dictionaries only, never the encoder run.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from cachetools import LRUCache
from PIL import Image

from runtime.errors import CapacityExhausted, UnknownImageId
from runtime.pixel_store import kept_pixel_bytes, rgb_bytes
from runtime.prompt_cache import PromptStore
from runtime.shared_entry import EMBEDDING_BYTES
from runtime.tensors import EmbeddingValue

#: Length of an image id: hex digits of the SHA-256 of the uploaded image file (128 bits).
IMAGE_ID_HEX_CHARS = 32


def image_id_for(data: bytes) -> str:
    """The cache key and public ``image_id`` of an uploaded image file's bytes."""
    return hashlib.sha256(data).hexdigest()[:IMAGE_ID_HEX_CHARS]


def unknown_image_id(image_id: str) -> UnknownImageId:
    """The 404 for an ``image_id`` this instance (and the shared tier, if any) does not hold."""
    return UnknownImageId(f"image_id {image_id} is unknown or its embedding was evicted: send the image again")


@dataclass(frozen=True)
class CachedImage:
    """One image's embedding and what is needed to answer further clicks without re-upload.

    ``embedding``: float32 1x256x64x64, a numpy array (CPU) or an ``OrtValue`` on the GPU.
    ``orig_size_hw``: upright original (H, W), pixels. ``input_size_hw``: resized (h, w).
    ``image_bytes``: the uploaded file, held only while something reads it: an entry made here
    holds it until the shared tier's write is queued (``local_copy`` then drops it: ``b""``);
    an entry read from the shared tier keeps it, as its follow-ups' cut-outs decode it.
    ``upright_pixels``: the upright decoded RGB image (``orig_size_hw``, H*W*3 bytes; never
    altered, ``runtime.pixel_store``), so a follow-up's cut-out needs no re-decode; ``None`` when
    not kept (an entry from the shared tier: its file is decoded, bounded by the upload rules).
    ``prompts``: this image's decoded prompts (``runtime.prompt_cache``), charged to ``nbytes``.
    """

    image_id: str
    embedding: EmbeddingValue
    embedding_bytes: int
    orig_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]
    image_bytes: bytes
    upright_pixels: Image.Image | None = None
    prompts: PromptStore = field(default_factory=PromptStore, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        """What the entry holds: embedding, file, kept pixels and decoded prompts, in bytes."""
        pixels = 0 if self.upright_pixels is None else rgb_bytes(self.orig_size_hw)
        return self.embedding_bytes + len(self.image_bytes) + pixels + self.prompts.nbytes


def entry_bytes_for(size_hw: tuple[int, int], prompt_bytes: int = 0, embedding_bytes: int = EMBEDDING_BYTES) -> int:
    """The charge of an entry made here for an upright (H, W) photo (``CachedImage.nbytes`` once
    ``local_copy`` dropped its file): embedding + kept pixels (H*W*3) + ``prompt_bytes`` of prompts."""
    return embedding_bytes + kept_pixel_bytes(size_hw) + prompt_bytes


def local_copy(entry: CachedImage) -> CachedImage:
    """What the local cache keeps of a new ``entry``: without the file once the upright pixels are
    kept, as nothing here reads it then (the shared tier's write, queued when the entry was made,
    holds the full entry until it is stored), so the file is neither held nor charged."""
    if entry.upright_pixels is None or not entry.image_bytes:
        return entry
    return replace(entry, image_bytes=b"")


@dataclass(frozen=True)
class CacheStats:
    """Counters since start-up, and current occupancy in bytes and entries."""

    hits: int
    misses: int
    coalesced: int
    evictions: int
    uncacheable: int
    entries: int
    bytes_held: int
    max_bytes: int
    pinned_entries: int
    pinned_bytes: int
    max_pinned_bytes: int


class _CountingLRU(LRUCache):  # type: ignore[type-arg]
    """``LRUCache`` that counts evictions."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize=maxsize, getsizeof=lambda entry: entry.nbytes)
        self.evictions = 0

    def popitem(self) -> tuple[str, CachedImage]:
        item = super().popitem()
        self.evictions += 1
        return item  # type: ignore[no-any-return]


class EmbeddingCache:
    """Thread-safe embedding cache with single flight and pinning (see module docstring)."""

    def __init__(self, max_bytes: int, max_pinned_bytes: int | None = None) -> None:
        if max_bytes <= 0:
            raise ValueError(f"cache size must be a positive number of bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self.max_pinned_bytes = max_bytes // 2 if max_pinned_bytes is None else max_pinned_bytes
        if self.max_pinned_bytes < 0:
            raise ValueError("pinned budget must be >= 0 bytes")
        self._lock = threading.Lock()
        self._lru = _CountingLRU(max_bytes)
        self._pinned: dict[str, tuple[CachedImage, int]] = {}
        self._inflight: dict[str, Future[CachedImage]] = {}
        self._hits = self._misses = self._coalesced = self._uncacheable = 0

    def get(self, image_id: str) -> CachedImage:
        """The entry for ``image_id`` (refreshing its recency); ``UnknownImageId`` if absent."""
        with self._lock:
            entry = self._lookup(image_id)
            if entry is None:
                self._misses += 1
                raise unknown_image_id(image_id)
            self._hits += 1
            return entry

    def get_or_compute(self, image_id: str, compute: Callable[[], CachedImage]) -> tuple[CachedImage, bool]:
        """Return (entry, was_cached). ``compute`` runs once per key even under concurrency.

        Callers that wait on another thread's computation get its entry (or its exception)
        and count as ``coalesced``; they report ``was_cached`` True, since they ran no encoder.
        """
        with self._lock:
            entry = self._lookup(image_id)
            if entry is not None:
                self._hits += 1
                return entry, True
            pending = self._inflight.get(image_id)
            if pending is None:
                future: Future[CachedImage] = Future()
                self._inflight[image_id] = future
                self._misses += 1
            else:
                self._coalesced += 1
        if pending is not None:
            return pending.result(), True
        try:
            entry = compute()
        except BaseException as exc:
            with self._lock:
                del self._inflight[image_id]
            future.set_exception(exc)
            raise
        with self._lock:
            if entry.nbytes <= self.max_bytes:
                self._lru[image_id] = entry
            else:
                self._uncacheable += 1
            del self._inflight[image_id]
        future.set_result(entry)
        return entry, False

    def pin(self, image_id: str) -> CachedImage:
        """Keep ``image_id``'s entry alive regardless of LRU eviction until ``unpin``.

        Raises ``UnknownImageId`` if absent and ``CapacityExhausted`` over the pinned budget.
        """
        with self._lock:
            entry = self._lookup(image_id)
            if entry is None:
                raise UnknownImageId(f"image_id {image_id} is unknown or its embedding was evicted")
            if image_id in self._pinned:
                self._pinned[image_id] = (entry, self._pinned[image_id][1] + 1)
                return entry
            if self._pinned_bytes() + entry.nbytes > self.max_pinned_bytes:
                raise CapacityExhausted(
                    f"too many open sessions: pinned embeddings would exceed {self.max_pinned_bytes} bytes; "
                    "close sessions or retry later"
                )
            self._pinned[image_id] = (entry, 1)
            return entry

    def unpin(self, image_id: str) -> None:
        """Release one pin of ``image_id`` (no-op if it is not pinned)."""
        with self._lock:
            pinned = self._pinned.get(image_id)
            if pinned is None:
                return
            entry, count = pinned
            if count > 1:
                self._pinned[image_id] = (entry, count - 1)
            else:
                del self._pinned[image_id]

    def recharge(self, entry: CachedImage) -> None:
        """Re-weigh ``entry`` after its prompt store changed (LRU may evict others to make room);
        an entry that no longer fits the budget drops its prompts instead."""
        with self._lock:
            if entry.nbytes > self.max_bytes:
                entry.prompts.clear()
            if self._lru.get(entry.image_id) is entry:
                self._lru[entry.image_id] = entry

    def release_oldest(self, fraction: float) -> int:
        """Evict least recently used entries (pins stay) until at most ``1 - fraction`` of the bytes
        held stay; the bytes freed. For an out-of-memory: the next request then finds room."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be within [0, 1], got {fraction}")
        with self._lock:
            before = int(self._lru.currsize)
            keep = before - int(before * fraction)
            while self._lru and self._lru.currsize > keep:
                self._lru.popitem()
            return before - int(self._lru.currsize)

    def stats(self) -> CacheStats:
        with self._lock:
            unpinned_extra = sum(e.nbytes for key, (e, _) in self._pinned.items() if key not in self._lru)
            return CacheStats(
                hits=self._hits, misses=self._misses, coalesced=self._coalesced,
                evictions=self._lru.evictions, uncacheable=self._uncacheable,
                entries=len(self._lru) + sum(1 for key in self._pinned if key not in self._lru),
                bytes_held=int(self._lru.currsize) + unpinned_extra, max_bytes=self.max_bytes,
                pinned_entries=len(self._pinned), pinned_bytes=self._pinned_bytes(),
                max_pinned_bytes=self.max_pinned_bytes,
            )

    def _lookup(self, image_id: str) -> CachedImage | None:
        entry: CachedImage | None = self._lru.get(image_id)
        if entry is None and image_id in self._pinned:
            entry = self._pinned[image_id][0]
        return entry

    def _pinned_bytes(self) -> int:
        return sum(entry.nbytes for entry, _ in self._pinned.values())
