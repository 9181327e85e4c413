"""Warm requests on the wire: ``"warm": true`` (JSON, zip's points.json), ``warm=true`` (a raw image's
custom attributes), or every invocation of a server started with ``SAM_WARM_REQUESTS=true`` (a pre-warm
batch transform job: CreateTransformJob cannot send custom attributes, so the job's ``Environment``
says it). The answer is one small JSON object (``application/json``, HTTP 200)::

    {"image_id": "...", "outcome": "stored" | "already_present" | "refused",
     "stored_bytes": 4195921, "encoder_ran": true, "original_size_hw": [H, W], "timings_ms": {...}}

A refused photo's object has ``reason`` (the error code: ``invalid_image``, ``payload_too_large``,
``shared_tier_off``, ``shared_tier_unavailable``), ``status`` (the HTTP status the normal path would
answer: 400, 413, 503) and ``message`` instead of the sizes, so a batch job's outputs report every
photo. A malformed warm request (points, an ``image_id``, a session) is a plain 400; an overloaded
or timed-out server answers its usual 503, which SageMaker retries.
"""

from __future__ import annotations

from typing import Any

from runtime.cache import image_id_for
from runtime.errors import BadRequest, PayloadTooLarge, ServiceError, SharedTierFailing, SharedTierOff
from runtime.holds import HoldExtractor
from runtime.warm import warm_photo
from serving.contract import ParsedRequest
from serving.errors import http_status

#: What a warm request may answer as ``refused`` (the photo, or the tier); anything else is an HTTP error.
REFUSALS: tuple[type[ServiceError], ...] = (BadRequest, PayloadTooLarge, SharedTierOff, SharedTierFailing)
WARM_OUTCOMES = ("stored", "already_present", "refused")


def check_warm_request(parsed: ParsedRequest, session_header: str | None) -> bytes:
    """The photo of a well-formed warm request; ``BadRequest`` naming what does not belong in one."""
    if parsed.image_id is not None:
        raise BadRequest("a warm request carries the photo itself, not an image_id: its embedding is what gets stored")
    if parsed.image_bytes is None:
        raise BadRequest("a warm request needs the photo: image_base64, the zip's image.bin, or the raw image body")
    if parsed.clicks or parsed.box_xyxy is not None:
        raise BadRequest("a warm request decodes no prompts: send no points and no box")
    if session_header is not None or parsed.close_session:
        raise BadRequest("a warm request opens, uses and closes no session")
    return parsed.image_bytes


def warm_line(extractor: HoldExtractor, image_bytes: bytes) -> dict[str, Any]:
    """The warm answer's object for one photo (see the module docstring)."""
    try:
        result = warm_photo(extractor, image_bytes)
    except REFUSALS as exc:
        return {"image_id": image_id_for(image_bytes), "outcome": "refused", "reason": exc.code,
                "status": http_status(exc), "message": exc.message, "stored_bytes": 0}
    return {"image_id": result.image_id, "outcome": result.outcome, "stored_bytes": result.stored_bytes,
            "encoder_ran": result.encoder_ran, "original_size_hw": list(result.orig_size_hw),
            "timings_ms": result.timings_ms}
