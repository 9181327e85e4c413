"""The upright decoded pixels a cache entry keeps for follow-ups: raw RGB bytes.

A follow-up by ``image_id`` that needs pixels (a cut-out) unpacks them instead of decoding
the client's file again: the bytes are ours (never client-built structure) and their size is
fixed by the entry's (H, W), so unpacking is one copy of H x W x 3 bytes. Raw, not LZ4: on a
12 MP synthetic wall LZ4 saved nothing (36.1 MB of 36.0) and cost 280 ms to pack.
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


def kept_pixels(image: LoadedImage) -> bytes | None:
    """The pixels an entry keeps of a decoded photo (``pack_rgb``), or None: a photo decoded on the
    device is never copied back to the host for this (the cut-out resizes it there), and one over
    ``MAX_KEPT_PIXELS`` is not kept."""
    if image.host is None or not keeps_pixels(image.size_hw):
        return None
    return pack_rgb(image.host)


def pack_rgb(image: Image.Image) -> bytes:
    """An RGB image as H x W x 3 uint8 bytes, row-major (the entry knows H, W)."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    return image.tobytes()


def unpack_rgb(packed: bytes, size_hw: tuple[int, int]) -> Image.Image:
    """The RGB image ``pack_rgb`` made, of (H, W) = ``size_hw`` pixels; ``ValueError`` if it is not whole."""
    height, width = size_hw
    expected = rgb_bytes(size_hw)
    if len(packed) != expected:
        raise ValueError(f"kept pixels are {len(packed)} bytes, expected {expected}")
    return Image.frombytes("RGB", (width, height), packed)
