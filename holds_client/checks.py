"""Checks of an answer that hold whatever the model's weights: sizes, mask values, alpha, pixels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from holds_client.client import HoldsResult
from holds_client.prompts import Point


def verify(result: HoldsResult, image: bytes) -> list[str]:
    """Problems with an answer, independent of the model's weights: sizes, mask values, alpha.

    The mask must be binary and of the photo's upright size (or its ``max_side`` scaling);
    the cut-out must carry the photo's pixels (within WebP's loss when it is WebP) with alpha
    255 on the mask and 25 elsewhere.
    """
    problems = []
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(image))).convert("RGB")
    if result.mask_image is None:
        return ["the answer has no mask"]
    mask_image = Image.open(io.BytesIO(result.mask_image))
    mask = np.asarray(mask_image.convert("L"))
    if mask_image.size != upright.size and not result.metadata.get("width"):
        problems.append(f"mask is {mask_image.size}, the upright photo {upright.size}")
    if not set(np.unique(mask).tolist()) <= {0, 255}:
        problems.append("mask is not binary (values other than 0 and 255)")
    if result.result_image is not None:
        encoded = Image.open(io.BytesIO(result.result_image))
        lossy = encoded.format == "WEBP"
        cutout = encoded.convert("RGBA") if lossy else encoded.copy()
        if cutout.mode != "RGBA" or cutout.size != mask_image.size:
            problems.append(f"cut-out is {cutout.mode} {cutout.size}, expected RGBA {mask_image.size}")
        else:
            pixels = np.asarray(cutout)
            expected_alpha = np.where(mask > 0, 255, 25)
            if not np.array_equal(pixels[..., 3], expected_alpha):
                problems.append("cut-out alpha is not 255 on the mask and 25 elsewhere")
            if cutout.size == upright.size:
                difference = np.abs(pixels[..., :3].astype(np.int16) - np.asarray(upright, np.int16)).mean()
                if difference > (4.0 if lossy else 2.0):
                    problems.append(f"cut-out pixels differ from the photo (mean difference {difference:.1f})")
    return problems


def centre(image: bytes) -> Point:
    """The centre of the upright photo, (x, y) in pixels."""
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(image)))
    return upright.width / 2, upright.height / 2


def mask_is_empty(mask: bytes) -> bool:
    """True when a mask image has no hold pixel."""
    return Image.open(io.BytesIO(mask)).convert("L").getbbox() is None
