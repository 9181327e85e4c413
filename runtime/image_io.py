"""Decoding of uploaded images into upright 8-bit RGB, with clear refusals.

Accepted: JPEG (and MPO, the multi-picture JPEG of many phones), PNG, WebP, BMP, GIF
(first frame) and TIFF. The EXIF orientation is applied, as the old service's OpenCV
decoder did, so click coordinates are in the upright frame. Grayscale, palette, alpha,
CMYK and 16-bit images are converted to RGB (16-bit samples are scaled by 1/257, i.e.
the high byte, as OpenCV does). Images over ``max_pixels`` are refused from their header,
before any pixel is decoded (decompression bombs).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from runtime.errors import InvalidImage, PayloadTooLarge

#: Pillow format names; JPEG also opens MPO (multi-picture JPEG) files.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

#: Default limit on decoded pixels (width x height): 64 MP covers 48-50 MP phone sensors.
DEFAULT_MAX_PIXELS = 64_000_000

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: Pillow's format name and the upright (H, W) in pixels."""

    format: str
    size_hw: tuple[int, int]


#: EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


def probe_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Read only the header, with the same refusals as ``decode_image`` (no pixel is decoded).

    Used before decoding on a device, so that the pixel limit and the bomb checks hold there too.
    """
    with _refusals():
        image = _open_checked(data, max_pixels)
        width, height = image.size
        if image.getexif().get(0x0112) in _SWAPPING_ORIENTATIONS:
            width, height = height, width
        return ImageHeader(str(image.format), (height, width))


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Image file bytes -> upright RGB PIL image (mode ``RGB``, W x H as stored after EXIF).

    Raises ``InvalidImage`` for empty, unknown, truncated or corrupt data, and
    ``PayloadTooLarge`` for images with more than ``max_pixels`` pixels.
    """
    with _refusals():
        image = _open_checked(data, max_pixels)
        image.load()
        upright: Image.Image = ImageOps.exif_transpose(image) or image
        return to_rgb(upright)


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse empty data, invalid sizes and more than ``max_pixels``."""
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"the image has an invalid size {width}x{height}")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"the image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}"
        )
    return image


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """Turn Pillow's failures into ``InvalidImage`` / ``PayloadTooLarge`` (bomb warnings are errors)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (InvalidImage, PayloadTooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"the image is too large to decode safely: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(
            f"the data is not an image in a supported format ({', '.join(ALLOWED_FORMATS)})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, MemoryError) as exc:
        raise InvalidImage(f"the image could not be decoded (truncated or corrupt): {exc}") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. 16-bit samples keep their high byte; alpha is dropped."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        samples = np.asarray(image, dtype=np.uint32)
        return Image.fromarray((np.clip(samples, 0, 65535) >> 8).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        samples = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(samples, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")
