"""References for tests: the old service's algorithm in PyTorch, and the runtime's in-process answer."""

from __future__ import annotations

import base64
import functools
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from export.old_service import old_service_predict
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings


def old_service_masks(sam: Sam, image: NDArray[np.uint8], clicks_xy: list[tuple[float, float]],
                      predictor: SamPredictor | None = None) -> tuple[NDArray[np.bool_], list[NDArray[np.bool_]]]:
    """set_image once (unless ``predictor`` already holds the image), then the old service's clicks."""
    if predictor is None:
        predictor = SamPredictor(sam)
        with torch.no_grad():
            predictor.set_image(image)
    return old_service_predict(predictor, clicks_xy)


def encode(image: NDArray[np.uint8] | Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    """Encode an RGB array or PIL image to file bytes."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def _extractor(model_dir: str) -> HoldExtractor:
    return HoldExtractor.from_model_dir(Path(model_dir), RuntimeSettings())


def in_process_mask(model_dir: Path, image: bytes | None, points: Sequence[tuple[float, float]],
                    labels: Sequence[int] | None = None, image_id: str | None = None,
                    box_xyxy: tuple[float, float, float, float] | None = None,
                    options: ExtractOptions | None = None, nontrivial: bool = True) -> NDArray[np.bool_]:
    """The runtime's own answer (bool H x W union mask) for a request: what every client must get.

    ``nontrivial``: the answer must hold some mask pixels and some background, so a comparison
    with it cannot pass on a runtime that answers empty (or full) masks to everyone.
    """
    labels = list(labels) if labels is not None else [1] * len(points)
    clicks = tuple(Click(float(x), float(y), int(label)) for (x, y), label in zip(points, labels))
    extractor = _extractor(str(model_dir))
    if image is not None:
        request = ExtractRequest(clicks, image_bytes=image, box_xyxy=box_xyxy, options=options or ExtractOptions())
    else:
        request = ExtractRequest(clicks, image_id=image_id, box_xyxy=box_xyxy, options=options or ExtractOptions())
    mask = extractor.extract(request).mask
    return require_nontrivial(mask) if nontrivial else mask


def require_nontrivial(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``mask``, after checking it holds some mask pixels and some background (an expected answer
    that is empty or full would let a broken runtime pass every comparison)."""
    if not 0 < np.count_nonzero(mask) < mask.size:
        raise AssertionError(f"the in-process answer is trivial ({np.count_nonzero(mask)} of {mask.size} pixels set): "
                             "a comparison with it would prove nothing")
    return mask


def decode_mask(data: bytes | str) -> NDArray[np.bool_]:
    """A mask image (PNG 8-bit 0/255 or 1-bit; raw bytes or base64) -> bool H x W."""
    raw = base64.b64decode(data) if isinstance(data, str) else data
    image = Image.open(io.BytesIO(raw))
    values = np.asarray(image.convert("L"))
    if not set(np.unique(values).tolist()) <= {0, 255}:
        raise AssertionError(f"the mask is not binary: values {np.unique(values)[:10]}")
    return values > 0


def zip_archive(entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip file holding ``entries`` (member name -> bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()
