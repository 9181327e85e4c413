"""Small deterministic test images (gradients, blobs and noise) for parity and contract tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def synthetic_image(size_hw: tuple[int, int], seed: int = 0) -> NDArray[np.uint8]:
    """A deterministic HxWx3 uint8 RGB test image: smooth gradients plus blobs and noise."""
    rng = np.random.default_rng(seed)
    height, width = size_hw
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 255], axis=-1)
    for _ in range(12):
        cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.03, 0.12) * max(size_hw)
        colour = rng.uniform(0, 255, 3)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        image[inside] = colour
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)
