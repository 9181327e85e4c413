"""The old service's algorithm in PyTorch, as the parity reference (tests only)."""

from __future__ import annotations

import io

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.modeling import Sam


def old_service_masks(sam: Sam, image: NDArray[np.uint8], clicks_xy: list[tuple[float, float]],
                      predictor: SamPredictor | None = None) -> tuple[NDArray[np.bool_], list[NDArray[np.bool_]]]:
    """set_image once, one predict(multimask_output=False) per click, OR: (union, per-click masks)."""
    if predictor is None:
        predictor = SamPredictor(sam)
        with torch.no_grad():
            predictor.set_image(image)
    union = np.zeros(image.shape[:2], dtype=bool)
    per_click = []
    for x, y in clicks_xy:
        with torch.no_grad():
            masks, _, _ = predictor.predict(point_coords=np.array([[x, y]], np.float32),
                                            point_labels=np.array([1]), multimask_output=False)
        per_click.append(masks[0])
        union |= masks[0]
    return union, per_click


def encode(image: NDArray[np.uint8] | Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    """Encode an RGB array or PIL image to file bytes."""
    pil = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **params)
    return buffer.getvalue()
