"""Decode a request's prompts, reusing those its image has decoded before (``runtime.prompt_cache``).

Only the prompts not yet stored (each distinct one once) go to the decoder, in one ``decode``
call, so they keep its batching; the answer is assembled in the request's prompt order. Only host
logits are kept (the CPU tier); on a GPU, or with a per-image budget of 0, every prompt is decoded.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

from runtime.cache import CachedImage, EmbeddingCache
from runtime.engine import Decoded, SamEngine
from runtime.prompt_cache import DecodedPrompt, prompt_key
from runtime.tensors import to_host


class PromptReuse:
    """The decoder behind each cached image's prompt store; counts prompts decoded and reused."""

    def __init__(self, engine: SamEngine, cache: EmbeddingCache, max_bytes_per_image: int) -> None:
        self.engine = engine
        self.cache = cache
        self.max_bytes_per_image = max_bytes_per_image
        self._lock = threading.Lock()
        self._decoded = self._reused = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes_per_image > 0 and not self.engine.on_gpu

    def decode(self, entry: CachedImage, coords: NDArray[np.float32], labels: NDArray[np.float32]
               ) -> tuple[Decoded, dict[str, float]]:
        """Decoded B prompts (coords float32 BxNx2 in the resized frame, labels BxN) and the counts
        ``prompts_decoded`` / ``prompts_reused`` of this call."""
        if not self.enabled:
            decoded = self.engine.decode(entry.embedding, coords, labels)
            return decoded, self._count(len(coords), 0)
        keys = [prompt_key(coords[i], labels[i]) for i in range(len(coords))]
        found = {key: hit for key in set(keys) if (hit := entry.prompts.get(key)) is not None}
        missing = list(dict.fromkeys(key for key in keys if key not in found))
        if missing:
            rows = [keys.index(key) for key in missing]
            fresh = self.engine.decode(entry.embedding, coords[rows], labels[rows])
            logits = np.asarray(to_host(fresh.low_res_masks), np.float32)
            for j, key in enumerate(missing):
                found[key] = DecodedPrompt(logits[j], fresh.iou_predictions[j])
                entry.prompts.put(key, found[key], self.max_bytes_per_image)
            self.cache.recharge(entry)
        decoded = Decoded(np.stack([found[key].logits for key in keys]), np.stack([found[key].scores for key in keys]))
        return decoded, self._count(len(missing), len(keys) - len(missing))

    def stats(self) -> dict[str, object]:
        """Counters since start-up, for /stats."""
        with self._lock:
            return {"enabled": self.enabled, "max_bytes_per_image": self.max_bytes_per_image,
                    "prompts_decoded": self._decoded, "prompts_reused": self._reused}

    def _count(self, decoded: int, reused: int) -> dict[str, float]:
        with self._lock:
            self._decoded += decoded
            self._reused += reused
        return {"prompts_decoded": float(decoded), "prompts_reused": float(reused)}
