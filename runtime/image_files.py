"""Decoding of uploaded images into upright 8-bit RGB, with clear refusals.

Accepted: JPEG (and MPO, the multi-picture JPEG of many phones), PNG, WebP, BMP, GIF
(first frame) and TIFF. The EXIF orientation is applied, as the old service's OpenCV
decoder did, so click coordinates are in the upright frame. Grayscale, palette, alpha,
CMYK and 16-bit images are converted to RGB (16-bit samples are scaled by 1/257, i.e.
the high byte, as OpenCV does).

Before Pillow opens a file, its structural units are bounded (``runtime.file_structure``:
JPEG scans, segments and fill bytes, PNG chunks, GIF sub-blocks, TIFF tags, BMP RLE data, WebP
chunks and canvas; an MPO's frames after the first are never read), so
a file's cost follows its pixels, not how it is built. Then the header is checked against
``ImageLimits``: the pixel count (decompression bombs), and the file's size against what its
pixels justify (padding, trailing data). ``probe_image`` hands the opened file to
``read_image``, so an upload is parsed once. Our own failures, such as running out of
memory, are not the client's fault and are not reported as a bad image.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from runtime.errors import InvalidImage, PayloadTooLarge
from runtime.file_structure import check_file_size, check_file_structure, check_pixel_count

#: Pillow format names; JPEG also opens MPO (multi-picture JPEG) files.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")

#: Default limit on decoded pixels (width x height): 64 MP covers 48-50 MP phone sensors.
DEFAULT_MAX_PIXELS = 64_000_000
#: Default limit on a JPEG's scans. A baseline JPEG has 1; libjpeg's standard progressive
#: script has 10 (6 for grayscale), and optimizing encoders stay within a few dozen.
DEFAULT_MAX_JPEG_SCANS = 100

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
#: EXIF orientations that swap width and height (transposed and 90/270-degree rotations).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112
#: What Pillow raises for malformed files (caught only around Pillow's calls). Mutation fuzzing
#: of JPEG, PNG, WebP, GIF, BMP and TIFF files (20,000 cases) raised only OSError, ValueError
#: and Pillow's own errors; SyntaxError ("broken PNG file"), EOFError, struct.error and
#: zlib.error are parse failures of truncated headers and streams. KeyError, TypeError,
#: IndexError and MemoryError are not caught: they would be our faults (500 with a request id).
_MALFORMED = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


@dataclass(frozen=True)
class ImageLimits:
    """What an upload may cost to decode: pixels (width x height) and JPEG scans."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS


DEFAULT_IMAGE_LIMITS = ImageLimits()


class OpenedFile:
    """The Pillow image ``probe_image`` opened (header parsed, no pixels), handed once to the decode."""

    def __init__(self, image: Image.Image | None) -> None:
        self._image = image

    def take(self) -> Image.Image | None:
        """The opened image, once (later calls: None, so the header does not keep the pixels alive)."""
        image, self._image = self._image, None
        return image


@dataclass(frozen=True)
class ImageHeader:
    """An image file's header facts: Pillow format, stored (W, H) and upright (H, W) after EXIF.

    ``opened``: the file as Pillow opened it, for ``read_image`` not to parse it again.
    """

    format: str
    stored_size_wh: tuple[int, int]
    upright_size_hw: tuple[int, int]
    opened: OpenedFile = field(default_factory=lambda: OpenedFile(None), compare=False, repr=False)


def probe_image(data: bytes, limits: ImageLimits = DEFAULT_IMAGE_LIMITS) -> ImageHeader:
    """Read and check an image file's header without decoding pixels.

    Raises ``InvalidImage`` for empty, unknown or malformed data, ``PayloadTooLarge`` for
    more than ``limits.max_pixels`` pixels, a JPEG with more than ``limits.max_jpeg_scans``
    scans, structure over a ``runtime.file_structure`` limit, or a file larger than its pixels
    justify.
    """
    image = _open(data, limits)
    return _header(image)


def read_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 limits: ImageLimits | None = None, probed: ImageHeader | None = None) -> Image.Image:
    """Image file bytes -> upright RGB PIL image (mode ``RGB``, W x H as stored after EXIF).

    ``limits`` (or ``max_pixels`` with the default scan limit) bound the decode work; see
    ``probe_image`` for the refusals, which come before any pixel is decoded. ``probed``: what
    ``probe_image`` answered for these same bytes under these same limits; the file Pillow
    opened then is decoded (not parsed again), and the structure walks are not repeated.
    """
    limits = limits or ImageLimits(max_pixels=max_pixels)
    image = probed.opened.take() if probed is not None else None
    if image is None:
        image = _open(data, limits, walk_structure=probed is None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            # In place: without it Pillow returns a full copy even when no turn is needed (orientation
            # 1), which doubled the memory of a decode (two 256 MB images for a 64 MP photo).
            ImageOps.exif_transpose(image, in_place=True)
            return to_rgb(image)
    except _MALFORMED as exc:
        raise InvalidImage(f"the image could not be decoded (truncated or corrupt): {exc}") from exc


def _open(data: bytes, limits: ImageLimits, walk_structure: bool = True) -> Image.Image:
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    if walk_structure:
        check_file_structure(data, limits.max_jpeg_scans, limits.max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"the image has more pixels than the limit of {limits.max_pixels}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(
            f"the data is not an image in a supported format ({', '.join(ALLOWED_FORMATS)})"
        ) from exc
    except _MALFORMED as exc:
        raise InvalidImage(f"the image header is malformed: {exc}") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"the image has an invalid size {width}x{height}")
    check_pixel_count((width, height), limits.max_pixels)
    check_file_size(len(data), (width, height))
    return image


def _header(image: Image.Image) -> ImageHeader:
    """The header's facts. For PNG only an eXIf chunk before the pixels is read: Pillow's
    ``getexif`` would decode every pixel to look for one after them (75 ms for 12 MP, twice per
    upload). ``HoldExtractor`` checks the decoded size again, so a late eXIf chunk is still right."""
    width, height = image.size
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            exif = Image.Exif()
            if raw:
                exif.load(raw)
            orientation = exif.get(_EXIF_ORIENTATION, 1)
        else:
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _MALFORMED:
        orientation = 1  # exif_transpose ignores what it cannot read, so the stored frame is upright
    upright = (width, height) if orientation in _SWAPPING_ORIENTATIONS else (height, width)
    return ImageHeader(str(image.format), (width, height), upright, OpenedFile(image))


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
