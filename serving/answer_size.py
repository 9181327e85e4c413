"""The answer's size, bounded before model work and checked after encoding.

SageMaker refuses a real-time answer over 6 MiB (``SAM_MAX_RESPONSE_BYTES``), after we have
spent the work and the memory to build it: a 1.3 MB request for a flat 64 MP photo with
uncompressed PNG outputs made a 427 MB answer. Before any model work the answer's least
size is estimated from the output pixels and formats (PNG at ``png_level`` 0 is stored
deflate: its size is known exactly; compressed formats may shrink to almost nothing, so they
count 0), and after encoding the real size is checked; either way the refusal is 413
``output_too_large`` with the largest ``max_side`` that fits.
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.errors import AnswerTooLarge
from runtime.holds import output_size_hw
from runtime.outputs import OutputOptions
from serving.responses import JSON, PNG, ZIP

#: base64 turns 3 bytes into 4 (JSON answers carry the image files as base64).
_BASE64_RATIO = 4 / 3
#: The share of the pixels that would fit by proportion which a suggested ``max_side`` keeps.
_SCALING_MARGIN = 0.7


def least_answer_bytes(out_size_hw: tuple[int, int], outputs: OutputOptions, media: str | None,
                       per_click_masks: int) -> int:
    """A lower bound of the answer's bytes for (H', W') outputs: only files that cannot shrink count.

    ``media``: the negotiated type (None: not known yet, counted as JSON); ``per_click_masks``:
    how many per-click 1-bit PNGs a JSON answer carries.
    """
    if outputs.png_level != 0:
        return 0
    height, width = out_size_hw
    files = 0
    row_bytes = {"png": width, "png1": (width + 7) // 8}
    if media == PNG:
        return height * (1 + row_bytes.get(outputs.mask_format, width))
    if outputs.result_format == "png":
        files += height * (1 + 4 * width)
    files += height * (1 + row_bytes.get(outputs.mask_format, 0)) if outputs.mask_format in row_bytes else 0
    if media in (JSON, None):
        files += per_click_masks * height * (1 + row_bytes["png1"])
        return int(files * _BASE64_RATIO)
    return files if media == ZIP else 0


def check_answer_estimate(out_size_hw: tuple[int, int], outputs: OutputOptions, media: str | None,
                          per_click_masks: int, limit_bytes: int) -> None:
    """Refuse, before any model work, an answer whose least size exceeds ``limit_bytes``."""
    least = least_answer_bytes(out_size_hw, outputs, media, per_click_masks)
    if least > limit_bytes:
        fit = _largest_max_side(out_size_hw, lambda size: least_answer_bytes(size, outputs, media, per_click_masks)
                                <= limit_bytes)
        raise AnswerTooLarge(f"the answer would be at least {least} bytes (uncompressed PNG, png_level 0), more than "
                             f"the response limit of {limit_bytes}: {_advice(fit)}")


def check_answer_size(answer_bytes: int, out_size_hw: tuple[int, int], limit_bytes: int) -> None:
    """Refuse an encoded answer over ``limit_bytes``; the suggested ``max_side`` scales its pixels to fit."""
    if answer_bytes <= limit_bytes:
        return
    height, width = out_size_hw
    # An answer grows with its pixels, but a downscaled photo compresses worse (measured: a 12 MP PNG cut-out
    # scaled to 0.9 of the limit's pixel share came out at 1.08 times the limit), hence the margin.
    fitting_pixels = height * width * limit_bytes / answer_bytes * _SCALING_MARGIN
    fit = _largest_max_side(out_size_hw, lambda size: size[0] * size[1] <= fitting_pixels)
    raise AnswerTooLarge(f"the answer is {answer_bytes} bytes, more than the response limit of {limit_bytes}: "
                         f"{_advice(fit)}")


def _advice(max_side: int) -> str:
    return (f"set outputs.max_side to {max_side} or less, or ask for result_format webp or none, mask_format png1 "
            "or rle, or a compressing png_level (1-9)")


def _largest_max_side(size_hw: tuple[int, int], fits: Callable[[tuple[int, int]], bool]) -> int:
    """The largest ``max_side`` whose output size (``output_size_hw``) ``fits`` (1 if none does)."""
    low, high = 1, max(size_hw)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(output_size_hw(size_hw, middle)):
            low = middle
        else:
            high = middle - 1
    return low
