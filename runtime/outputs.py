"""Encoding of the two output images: the cut-out (RGBA) and the mask.

The cut-out keeps the photo's RGB with alpha 255 on holds and 25 (``int(255 * 0.1)``, the
old service's value) elsewhere. The mask is 0/255 grayscale. PNG is the old contract;
WebP and a 1-bit mask PNG are compact alternatives that keep a 12 MP answer far under
SageMaker's 6 MiB real-time response limit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import png  # type: ignore[import-untyped]
from numpy.typing import NDArray
from PIL import Image

from runtime.errors import OutputTooLarge
from runtime.masks import BitMask

BACKGROUND_ALPHA = 25  # int(255 * 0.1)
HOLD_ALPHA = 255

#: WebP's format holds at most 16383 pixels a side.
WEBP_MAX_SIDE = 16383
#: libwebp's lossy encoder keeps per-macroblock modes in a first partition of at most 512 KiB,
#: which overflows on large images ("encoding error 6"): measured here with Pillow 13 at our
#: settings, noise (the worst case) encoded at 15.2 MP and failed at 16 MP; a flat 48 MP
#: image failed too. 14 MP covers 12-13 MP phone photos with a margin.
WEBP_MAX_PIXELS = 14_000_000

ResultFormat = Literal["png", "webp", "none"]
#: ``rle``: COCO compressed RLE in the JSON answer (``runtime.rle``), not an image file.
MaskFormat = Literal["png", "png1", "rle", "none"]
#: The dtypes an embedding travels in (``outputs.embedding_dtype``); float16 is the default (2 MiB for 1x256x64x64).
EmbeddingDtype = Literal["float16", "float32"]
EMBEDDING_DTYPES: tuple[EmbeddingDtype, ...] = get_args(EmbeddingDtype)
#: Mask formats that are image files (PNG bytes).
IMAGE_MASK_FORMATS = ("png", "png1")


@dataclass(frozen=True)
class OutputOptions:
    """How to encode outputs. ``png_level``: zlib level 0-9 (1 is ~3x faster than 6 on photos)."""

    result_format: ResultFormat = "png"
    mask_format: MaskFormat = "png"
    png_level: int = 1
    webp_quality: int = 90
    #: The image embedding's dtype in the answer (``outputs.embedding``); None: no embedding asked for.
    embedding_dtype: EmbeddingDtype | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.png_level <= 9:
            raise ValueError("png_level must be within 0..9")
        if not 1 <= self.webp_quality <= 100:
            raise ValueError("webp_quality must be within 1..100")


def check_output_size(out_size_hw: tuple[int, int], options: OutputOptions) -> None:
    """Refuse, before any model work, an output size the requested format cannot hold."""
    height, width = out_size_hw
    if options.result_format == "webp" and (max(height, width) > WEBP_MAX_SIDE or height * width > WEBP_MAX_PIXELS):
        fit = _max_side_within(out_size_hw, WEBP_MAX_PIXELS, WEBP_MAX_SIDE)
        raise OutputTooLarge(
            f"a WebP cut-out of {width}x{height} exceeds what WebP can encode ({WEBP_MAX_PIXELS / 1e6:g} MP, "
            f"{WEBP_MAX_SIDE} px a side): set outputs.max_side to {fit} or less, or use result_format png or none")


#: Per-click masks are kept bit-packed until encoded; their total is bounded so that many
#: clicks on a huge photo cannot take the memory of an instance (64 masks at 64 MP: 512 MB).
MAX_PER_CLICK_MASK_BYTES = 256 << 20


def check_per_click_masks(out_size_hw: tuple[int, int], masks: int) -> None:
    """Refuse, before any model work, per-click masks whose packed total exceeds the budget."""
    height, width = out_size_hw
    total = masks * height * ((width + 7) // 8)
    if total > MAX_PER_CLICK_MASK_BYTES:
        per_mask = MAX_PER_CLICK_MASK_BYTES // masks * 8
        fit = _max_side_within(out_size_hw, per_mask, max(height, width))
        raise OutputTooLarge(f"{masks} per-click masks of {width}x{height} need {total / 2**20:.0f} MiB, more than "
                             f"{MAX_PER_CLICK_MASK_BYTES >> 20} MiB: set outputs.max_side to {fit} or less, send fewer "
                             "clicks per request, or leave per_click_masks off")


def _max_side_within(size_hw: tuple[int, int], max_pixels: int, max_side: int) -> int:
    """The largest ``max_side`` whose scaled output has at most ``max_pixels`` and ``max_side`` px a side."""
    height, width = size_hw
    long_side, short_side = max(height, width), min(height, width)
    side = min(max_side, long_side, int((max_pixels * long_side / short_side) ** 0.5))
    while side > 1 and side * max(1, round(short_side * side / long_side)) > max_pixels:
        side -= 1
    return side


def cutout_rgba(rgb: Image.Image, mask: NDArray[np.bool_]) -> Image.Image:
    """RGB image (W x H) and bool (H, W) mask -> RGBA image with hold/background alpha."""
    if (rgb.height, rgb.width) != mask.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image size {rgb.height}x{rgb.width}")
    alpha = np.where(mask, np.uint8(HOLD_ALPHA), np.uint8(BACKGROUND_ALPHA)).astype(np.uint8)
    rgba = rgb.convert("RGB")  # a copy: never alter the caller's image
    rgba.putalpha(Image.fromarray(alpha, mode="L"))
    return rgba


def write_result(rgba: Image.Image, options: OutputOptions) -> bytes:
    """Encode the cut-out as PNG (RGBA) or WebP (RGBA, lossy with exact alpha)."""
    buffer = io.BytesIO()
    if options.result_format == "png":
        rgba.save(buffer, format="PNG", compress_level=options.png_level)
    elif options.result_format == "webp":
        try:
            rgba.save(buffer, format="WEBP", quality=options.webp_quality, alpha_quality=100, method=0, exact=False)
        except OSError as exc:  # libwebp refuses content it cannot fit (see WEBP_MAX_PIXELS)
            raise OutputTooLarge(f"WebP could not encode this {rgba.width}x{rgba.height} cut-out ({exc}): set a "
                                 "smaller outputs.max_side, or use result_format png") from exc
    else:
        raise ValueError("result_format 'none' has no encoding")
    return buffer.getvalue()


def write_mask(mask: NDArray[np.bool_] | BitMask, fmt: MaskFormat, png_level: int = 1) -> bytes:
    """Encode a bool (H, W) mask as 8-bit grayscale PNG (0/255) or 1-bit PNG.

    A 1-bit PNG is written straight from a ``BitMask``'s packed rows by pypng (no unpacking;
    Pillow unpacks to a byte a pixel first: measured on a 12 MP hold mask, 2.3 ms against 17-23 ms).
    """
    buffer = io.BytesIO()
    if fmt == "png":
        dense = mask.dense() if isinstance(mask, BitMask) else mask
        Image.fromarray(dense.astype(np.uint8) * np.uint8(255), mode="L").save(buffer, format="PNG", compress_level=png_level)
    elif fmt == "png1":
        bits = mask if isinstance(mask, BitMask) else BitMask.from_dense(np.asarray(mask, dtype=bool))
        height, width = bits.size_hw
        png.Writer(width, height, greyscale=True, bitdepth=1, compression=png_level).write_packed(buffer, bits.packed())
    else:
        raise ValueError(f"mask_format {fmt!r} is not an image encoding")
    return buffer.getvalue()
