"""Per-image store of decoded prompts, so a request that resends earlier clicks decodes only new ones.

A prompt's key is the decoder's exact input for it: its point coords float32 Nx2 (the resized
1024 frame, after the transform) and labels float32 N, as bytes with their shape. The store
lives in one ``CachedImage`` (one embedding of one engine, so one model and precision), and its
bytes count in that entry's ``nbytes``: evicting the image drops its prompts. The per-image
bound, given to ``put`` (SAM_PROMPT_CACHE_BYTES_PER_IMAGE), evicts its least recently used
prompts first. Values are host arrays only:
logits float32 TxLxL and scores float32 T of one prompt.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

PromptKey = bytes


def prompt_key(coords: NDArray[np.float32], labels: NDArray[np.float32]) -> PromptKey:
    """The key of one prompt: coords float32 Nx2 (resized frame) and labels float32 N, exactly."""
    coords32 = np.ascontiguousarray(coords, np.float32)
    labels32 = np.ascontiguousarray(labels, np.float32)
    return np.asarray(coords32.shape, np.int64).tobytes() + coords32.tobytes() + labels32.tobytes()


@dataclass(frozen=True)
class DecodedPrompt:
    """One prompt's decoder output: logits float32 TxLxL and scores float32 T (host)."""

    logits: NDArray[np.float32]
    scores: NDArray[np.float32]

    @property
    def nbytes(self) -> int:
        return int(self.logits.nbytes + self.scores.nbytes)


class PromptStore:
    """Thread-safe LRU of ``DecodedPrompt`` by ``prompt_key``, bounded by the ``max_bytes`` of ``put``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[PromptKey, DecodedPrompt] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held: keys and arrays."""
        return self._bytes

    def get(self, key: PromptKey) -> DecodedPrompt | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: PromptKey, value: DecodedPrompt, max_bytes: int) -> None:
        """Keep ``value`` (copied) unless it alone exceeds ``max_bytes``; older prompts make room."""
        size = value.nbytes + len(key)
        if size > max_bytes:
            return
        copy = DecodedPrompt(np.array(value.logits, np.float32), np.array(value.scores, np.float32))
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes + len(key)
            while self._items and self._bytes + size > max_bytes:
                old_key, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes + len(old_key)
            self._items[key] = copy
            self._bytes += size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
