"""Pre-warming the shared embedding tier: one photo's embedding computed and stored, nothing decoded.

A warm request carries a photo and no prompts. It ends one of three ways:

- ``already_present``: the store holds a valid entry of this model for the photo (checked with the
  same validation as a lookup: magic, model identity, lengths, checksum); nothing is encoded;
- ``stored``: the embedding (from the local cache, or one encoder run) was written to the store in
  the caller's thread (not the background writer: the answer says what the store holds);
- refused: a ``ServiceError`` is raised, the one the normal path raises for a bad photo (400
  ``invalid_image``, 413 ``payload_too_large``), or ``SharedTierOff`` (no tier configured) or
  ``SharedTierFailing`` (the store did not answer), both checked before any model work where possible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from runtime.cache import image_id_for
from runtime.errors import SharedTierFailing, SharedTierOff
from runtime.holds import HoldExtractor
from runtime.image_files import probe_image
from runtime.sam_preprocessing import check_resizable
from runtime.shared_tier import SharedTier

WarmOutcome = Literal["stored", "already_present"]


@dataclass(frozen=True)
class WarmResult:
    """One warmed photo: ``stored_bytes`` is the entry's size in the store (0 when already present);
    ``encoder_ran``: this request ran the encoder (not a local-cache hit); ``timings_ms`` its stages."""

    image_id: str
    outcome: WarmOutcome
    stored_bytes: int
    encoder_ran: bool
    orig_size_hw: tuple[int, int]
    timings_ms: dict[str, float] = field(default_factory=dict)


def tier_of(extractor: HoldExtractor) -> SharedTier:
    """The extractor's shared tier, or ``SharedTierOff`` naming why there is none."""
    if extractor.shared is None:
        raise SharedTierOff(f"this server has no shared embedding tier ({extractor.shared_off_reason}): "
                            "a warm request has nowhere to store the embedding")
    return extractor.shared


def warm_photo(extractor: HoldExtractor, image_bytes: bytes) -> WarmResult:
    """Compute ``image_bytes``' embedding and store it in the shared tier, unless it is there already."""
    tier = tier_of(extractor)
    header = probe_image(image_bytes, extractor.image_limits)
    check_resizable(header.upright_size_hw, extractor.engine.manifest.image_size)
    image_id = image_id_for(image_bytes)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    present, outcome = tier.store.get(image_id)
    timings["shared_lookup_ms"] = _ms(start)
    if present is not None:
        return WarmResult(image_id, "already_present", 0, False, present.orig_size_hw, timings)
    if outcome == "error" and not tier.store.available:
        raise SharedTierFailing("the shared embedding tier did not answer; nothing was encoded: retry later")
    with extractor.freeing_cache_when_out_of_memory():  # an out-of-memory is a 503, as for any request
        entry, cached = extractor.cache.get_or_compute(
            image_id, extractor.encoder_run(image_bytes, timings, probed=header))
    start = time.perf_counter()
    stored = tier.store_now(entry)
    timings["shared_write_ms"] = _ms(start)
    if stored is None:
        raise SharedTierFailing("the shared embedding tier refused or timed out the write: retry later")
    return WarmResult(image_id, "stored", stored, not cached, entry.orig_size_hw, timings)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
