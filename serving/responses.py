"""Response encoding per media type, and ``Accept`` negotiation. Pure functions.

- ``application/json``: ``{"result_image_base64", "mask_image_base64", "image_id", ...}``; with
  ``mask_format: rle`` the mask is ``mask_rle`` (COCO compressed RLE), per-click masks
  ``per_click_masks_rle``
- ``application/zip``: ``result_image.bin`` + ``mask_image.bin`` (+ ``metadata.json``, which
  carries ``mask_rle`` / ``per_click_masks_rle`` with ``mask_format: rle``)
- ``image/png``: the mask alone (8-bit, or 1-bit with ``mask_format: png1``)

With ``outputs.embedding: true`` a JSON answer has ``embedding`` (with ``data_base64``) and a zip
answer ``embedding.json`` + ``embedding.bin`` (``serving.embeddings``); ``image/png`` cannot carry it.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.holds import HoldResult
from runtime.outputs import IMAGE_MASK_FORMATS, MaskFormat, OutputOptions, cutout_rgba, write_mask, write_result
from runtime.rle import to_rle
from serving.embeddings import EMBEDDING_BIN_MEMBER, EMBEDDING_JSON_MEMBER, SerialisedEmbedding
from serving.errors import NotAcceptable

JSON = "application/json"
ZIP = "application/zip"
PNG = "image/png"
RESPONSE_TYPES = (JSON, ZIP, PNG)


@dataclass
class Prediction:
    """What ``predict_fn`` returns: the extraction (None for a close-only request) and context."""

    result: HoldResult | None
    outputs: OutputOptions
    default_accept: str
    warnings: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    closed_session_id: str | None = None
    #: The precision the model ran in (``SamEngine.precision``: f32, bf16, int8; fp32/fp16 on a GPU).
    precision: str = "f32"
    #: The image embedding, when ``outputs.embedding`` asked for it.
    embedding: SerialisedEmbedding | None = None
    #: A warm request's report line (``serving.warm``); then ``result`` is None.
    warm: dict[str, Any] | None = None


def negotiate(accept: str | None, default: str) -> str:
    """Pick the response media type from an ``Accept`` header (q-values honoured)."""
    if accept is None or not accept.strip():
        return default
    ranges = []
    for position, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        quality = 1.0
        for param in pieces[1:]:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranges.append((-quality, position, media))
    for _, _, media in sorted(ranges):
        if media in ("*/*", "*"):
            return default
        if media in RESPONSE_TYPES:
            return media
        if media == "application/*":
            return default if default.startswith("application/") else JSON
        if media == "image/*":
            return PNG
    raise NotAcceptable(f"cannot answer Accept: {accept!r}; available: {', '.join(RESPONSE_TYPES)}")


def check_carries_embedding(media: str | None) -> None:
    """Refuse (406) an embedding in an answer of ``media`` that cannot carry it (image/png, the mask alone)."""
    if media == PNG:
        raise NotAcceptable(f"an {PNG} answer is the mask alone and cannot carry the embedding: accept {JSON} or {ZIP}")


def serialise_prediction(prediction: Prediction, media: str,
                      check_files_bytes: Callable[[int], None] | None = None) -> tuple[bytes, str]:
    """Encode a prediction as ``media`` (already negotiated).

    The images are encoded first and timed, so the answer's ``timings_ms`` includes
    ``output_encode_ms`` (the cut-out and mask encoding; the framing around them is
    negligible beside it). ``check_files_bytes`` is called with the encoded files' size in the
    answer (base64 in JSON) before the framing copies them, and raises to refuse the answer:
    base64 and JSON of a huge answer hold the GIL for seconds, stalling the event loop.
    """
    if prediction.warm is not None:
        return json.dumps({**prediction.warm, "warnings": list(prediction.warnings)}).encode("utf-8"), JSON
    if prediction.result is None:
        body = {"closed_session_id": prediction.closed_session_id, "warnings": list(prediction.warnings)}
        return json.dumps(body).encode("utf-8"), JSON
    if prediction.embedding is not None:
        check_carries_embedding(media)
    start = time.perf_counter()
    images = _images(prediction, media)
    if check_files_bytes is not None:
        embedding = 0 if prediction.embedding is None else len(prediction.embedding.data)
        check_files_bytes(images.framed_bytes(media) + (-(-embedding // 3) * 4 if media == JSON else embedding))
    prediction.result.timings_ms["output_encode_ms"] = round((time.perf_counter() - start) * 1000.0, 3)
    return _ENCODERS[media](prediction, images), media


@dataclass(frozen=True)
class SerialisedImages:
    """The encoded outputs of one answer: cut-out, mask and per-click masks (None when not asked);
    with ``mask_format: rle`` the masks as COCO RLE dictionaries instead of PNGs."""

    result: bytes | None
    mask: bytes | None
    per_click_masks: list[bytes] | None
    mask_rle: dict[str, Any] | None = None
    per_click_rle: list[dict[str, Any]] | None = None

    def framed_bytes(self, media: str) -> int:
        """The image files' bytes in a ``media`` answer (JSON carries them as base64: 4 bytes per 3)."""
        files = [self.result, self.mask, *(self.per_click_masks or [])]
        total = sum(len(f) for f in files if f is not None)
        return -(-total // 3) * 4 if media == JSON else total


def _images(prediction: Prediction, media: str) -> SerialisedImages:
    result, outputs = prediction.result, prediction.outputs
    assert result is not None
    if media == PNG:
        fmt: MaskFormat = "png1" if outputs.mask_format == "png1" else "png"
        return SerialisedImages(None, write_mask(result.union, fmt, outputs.png_level), None)
    image = None
    if outputs.result_format != "none":
        if result.rgb is None:
            raise ValueError("the result image was requested but no pixels were kept")
        image = write_result(cutout_rgba(result.rgb, result.mask), outputs)
    fmt = outputs.mask_format
    mask = write_mask(result.union, fmt, outputs.png_level) if fmt in IMAGE_MASK_FORMATS else None
    mask_rle = to_rle(result.mask) if fmt == "rle" else None
    per_click = per_click_rle = None
    if result.masks is not None and fmt == "rle":
        per_click_rle = [to_rle(m.dense(keep=False)) for m in result.masks]  # one full-size mask at a time
    elif result.masks is not None and media == JSON:
        per_click = [write_mask(m, "png1", outputs.png_level) for m in result.masks]
    return SerialisedImages(image, mask, per_click, mask_rle, per_click_rle)


def metadata(prediction: Prediction, images: SerialisedImages | None = None) -> dict[str, Any]:
    """Everything but the image files: ids, sizes, per-click results, timings, warnings, RLE masks."""
    result = prediction.result
    assert result is not None
    rle: dict[str, Any] = {}
    if images is not None and images.mask_rle is not None:
        rle["mask_rle"] = images.mask_rle
    if images is not None and images.per_click_rle is not None:
        rle["per_click_masks_rle"] = images.per_click_rle
    return {
        "image_id": result.image_id,
        "cache_hit": result.cache_hit,
        "empty": result.empty,
        "width": result.out_size_hw[1],
        "height": result.out_size_hw[0],
        "original_width": result.orig_size_hw[1],
        "original_height": result.orig_size_hw[0],
        "clicks": [
            {"points": list(p.click_indices), "score": round(p.score, 6), "mask_token": p.token,
             "area": p.area, "kept": p.kept, "bbox_xyxy": None if p.box_xyxy is None else list(p.box_xyxy)}
            for p in result.prompts
        ],
        "timings_ms": _timings_with_legacy_names(result.timings_ms),
        "precision": prediction.precision,
        "warnings": list(prediction.warnings),
        **rle,
    }


def _serialise_json(prediction: Prediction, images: SerialisedImages) -> bytes:
    body: dict[str, Any] = {
        "result_image_base64": _b64(images.result),
        "mask_image_base64": _b64(images.mask),
        **metadata(prediction, images),
    }
    if images.per_click_masks is not None:
        body["per_click_masks_base64"] = [_b64(m) for m in images.per_click_masks]
    if prediction.embedding is not None:
        body["embedding"] = {**prediction.embedding.document, "data_base64": _b64(prediction.embedding.data)}
    return json.dumps(body).encode("utf-8")


def _serialise_zip(prediction: Prediction, images: SerialisedImages) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        if images.result is not None:
            archive.writestr("result_image.bin", images.result)
        if images.mask is not None:
            archive.writestr("mask_image.bin", images.mask)
        archive.writestr("metadata.json", json.dumps(metadata(prediction, images)))
        if prediction.embedding is not None:
            archive.writestr(EMBEDDING_JSON_MEMBER, json.dumps(prediction.embedding.document))
            archive.writestr(EMBEDDING_BIN_MEMBER, prediction.embedding.data)
    return buffer.getvalue()


def _serialise_png(prediction: Prediction, images: SerialisedImages) -> bytes:
    assert images.mask is not None
    return images.mask


#: Timing names of the previous release, still sent beside the new ones until the next release.
LEGACY_TIMING_NAMES = {"decode_ms": "image_decode_ms", "encode_ms": "output_encode_ms", "image_ms": "cutout_pixels_ms"}


def _timings_with_legacy_names(timings: dict[str, float]) -> dict[str, float]:
    """The stage timings plus their old names (``decode_ms`` = ``image_decode_ms``, ...)."""
    legacy = {old: timings[new] for old, new in LEGACY_TIMING_NAMES.items() if new in timings}
    return {**timings, **legacy}


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


_ENCODERS: dict[str, Callable[[Prediction, SerialisedImages], bytes]] = {JSON: _serialise_json, ZIP: _serialise_zip, PNG: _serialise_png}
