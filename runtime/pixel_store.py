"""The upright decoded pixels a cache entry keeps for follow-ups: LZ4 blocks of our own making.

A follow-up by ``image_id`` that needs pixels (a cut-out) unpacks them instead of decoding
the client's file again: the block is ours (never client-built structure) and its output
size is fixed by the entry's (H, W), so unpacking costs time linear in H x W x 3 bytes.
"""

from __future__ import annotations

import lz4.block
from PIL import Image

#: Bytes per pixel of the kept pixels (RGB, uint8).
RGB_BYTES_PER_PIXEL = 3


def pack_rgb(image: Image.Image) -> bytes:
    """An RGB image (H x W x 3 uint8, row-major) as one LZ4 block (size not stored: the entry knows H, W)."""
    if image.mode != "RGB":
        raise ValueError(f"expected an RGB image, got mode {image.mode}")
    return bytes(lz4.block.compress(image.tobytes(), store_size=False))


def unpack_rgb(packed: bytes, size_hw: tuple[int, int]) -> Image.Image:
    """The RGB image ``pack_rgb`` made, of (H, W) = ``size_hw`` pixels; ``ValueError`` if it is not whole."""
    height, width = size_hw
    expected = height * width * RGB_BYTES_PER_PIXEL
    raw = lz4.block.decompress(packed, uncompressed_size=expected)
    if len(raw) != expected:
        raise ValueError(f"kept pixels unpack to {len(raw)} bytes, expected {expected}")
    return Image.frombytes("RGB", (width, height), raw)
