"""The upright decoded pixels a cache entry keeps for follow-ups: the decoded RGB image itself.

A follow-up by ``image_id`` that needs pixels (a cut-out) uses them instead of decoding the
client's file again. The entry keeps the decoded image as it is, not a copy: copying 12 MP
took 26 ms of every first tap (page faults on a fresh 36 MB buffer) and doubled the peak.
Nothing alters a kept image (the cut-out copies before adding alpha, a resize makes a new
image), so concurrent follow-ups may read it. Not LZ4: on a 12 MP synthetic wall LZ4 saved
nothing (36.1 MB of 36.0) and cost 280 ms to pack.
"""

from __future__ import annotations

from PIL import Image

from runtime.preprocessors import LoadedImage

#: Bytes per pixel of the kept pixels (RGB, uint8).
RGB_BYTES_PER_PIXEL = 3
#: The largest photo whose pixels an entry keeps: a 12 MP phone photo (4032x3024, 36.6 MB). A
#: larger one keeps its file instead, and its follow-up cut-outs decode it again (bounded by the
#: upload rules), so one 64 MP upload cannot take 192 MB of the cache.
MAX_KEPT_PIXELS = 4032 * 3024


def rgb_bytes(size_hw: tuple[int, int]) -> int:
    """Bytes of an upright (H, W) RGB image: H * W * 3."""
    return size_hw[0] * size_hw[1] * RGB_BYTES_PER_PIXEL


def keeps_pixels(size_hw: tuple[int, int]) -> bool:
    """Whether an entry keeps the pixels of an upright (H, W) photo decoded on the host."""
    return size_hw[0] * size_hw[1] <= MAX_KEPT_PIXELS


def kept_pixel_bytes(size_hw: tuple[int, int]) -> int:
    """Bytes an entry keeps of a host-decoded upright (H, W) photo: H * W * 3, or 0 above ``MAX_KEPT_PIXELS``."""
    return rgb_bytes(size_hw) if keeps_pixels(size_hw) else 0


def kept_pixels(image: LoadedImage) -> Image.Image | None:
    """The pixels an entry keeps of a decoded photo (its RGB host image, not copied), or None: a
    photo decoded on the device is never copied back to the host for this (the cut-out resizes it
    there), and one over ``MAX_KEPT_PIXELS`` is not kept."""
    if image.host is None or not keeps_pixels(image.size_hw):
        return None
    if image.host.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.host.mode}")
    return image.host
