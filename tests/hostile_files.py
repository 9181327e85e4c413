"""Small image files whose structure (not their pixels) is huge: the decode-cost bombs of issue 24.

Each builder takes ``units``, the number of structural units (fill bytes, segments, chunks,
sub-blocks, strip offsets, RLE escapes) added to a valid 64x48 (or 2x1) image; every file
compresses to a few KB in a zip, which is how a client sends it under 100 KB.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

from runtime.file_structure import MAX_FILE_BYTES_PER_PIXEL, MAX_FILE_OVERHEAD_BYTES

SIZE_WH = (64, 48)


def _pixels() -> np.ndarray:
    rng = np.random.default_rng(24)
    return rng.integers(0, 256, (SIZE_WH[1], SIZE_WH[0], 3), dtype=np.uint8)


def _saved(fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_pixels()).save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg_with_fill_bytes(units: int) -> bytes:
    """A JPEG with ``units`` 0xFF fill bytes before its first marker after SOI."""
    data = _saved("JPEG")
    return data[:2] + b"\xff" * units + data[2:]


def jpeg_with_empty_comments(units: int) -> bytes:
    """A JPEG with ``units`` empty COM segments (4 bytes each) after SOI."""
    data = _saved("JPEG")
    return data[:2] + b"\xff\xfe\x00\x02" * units + data[2:]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_ancillary_chunks(units: int) -> bytes:
    """A PNG with ``units`` empty private ancillary chunks after IHDR."""
    data = _saved("PNG")
    ihdr_end = 8 + 25
    return data[:ihdr_end] + _png_chunk(b"prVt", b"") * units + data[ihdr_end:]


def png_with_trailing_bytes(padding_bytes: int) -> bytes:
    """A valid PNG followed by ``padding_bytes`` zero bytes after IEND."""
    return _saved("PNG") + bytes(padding_bytes)


def padded_to_the_size_limit(data: bytes, size_wh: tuple[int, int] = SIZE_WH) -> bytes:
    """``data`` (an image of ``size_wh`` pixels) followed by zero bytes up to the largest file
    those pixels justify (``runtime.file_structure``'s file-size rule): accepted, but as costly as allowed."""
    allowed = MAX_FILE_OVERHEAD_BYTES + MAX_FILE_BYTES_PER_PIXEL * size_wh[0] * size_wh[1]
    return data + bytes(allowed - len(data))


def png_padded_to_the_size_limit() -> bytes:
    """The 64x48 PNG padded after IEND to the size limit (2 MiB + 8 bytes a pixel)."""
    return padded_to_the_size_limit(_saved("PNG"))


def gif_with_comment_sub_blocks(units: int) -> bytes:
    """A GIF whose comment extension before the image has ``units`` one-byte sub-blocks."""
    data = _saved("GIF")
    packed = data[10]
    start = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    comment = b"\x21\xfe" + b"\x01x" * units + b"\x00"
    return data[:start] + comment + data[start:]


def tiff_with_strips(units: int) -> bytes:
    """A 2x1 grayscale TIFF whose StripOffsets and StripByteCounts have ``units`` values each."""
    entries = [(256, 3, 1, 2), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, units, 0), (278, 3, 1, 1), (279, 4, units, 0)]
    ifd_bytes = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_bytes
    counts_at = offsets_at + 4 * units
    pixels_at = counts_at + 4 * units
    values = {273: offsets_at, 279: counts_at}
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag in values:
            ifd += struct.pack("<HHII", tag, kind, count, values[tag])
        else:
            ifd += struct.pack("<HHIHH", tag, kind, count, value, 0)
    ifd += struct.pack("<I", 0)
    strips = struct.pack(f"<{units}I", *([pixels_at] * units))
    counts = struct.pack(f"<{units}I", *([2] * units))
    return b"II*\x00" + struct.pack("<I", 8) + ifd + strips + counts + b"\x40\x80"


def bmp_with_rle_escapes(units: int) -> bytes:
    """A 64x48 RLE8 BMP of ``units`` no-op delta escapes, then the rows as runs, then end of bitmap."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    rows = (struct.pack("BB", SIZE_WH[0], 7) + b"\x00\x00") * SIZE_WH[1]
    payload = b"\x00\x02\x00\x00" * units + rows + b"\x00\x01"
    offset = 14 + 40 + len(palette)
    dib = struct.pack("<IiiHHIIiiII", 40, SIZE_WH[0], SIZE_WH[1], 1, 8, 1, len(payload), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(payload), 0, 0, offset) + dib + palette + payload


def _riff_chunk(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def _webp(chunks: bytes) -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def _vp8x(flags: int, canvas_wh: tuple[int, int]) -> bytes:
    """A VP8X chunk: feature ``flags`` (0x02: animation) and the canvas (W, H)."""
    width, height = canvas_wh
    return _riff_chunk(b"VP8X", bytes((flags, 0, 0, 0)) + (width - 1).to_bytes(3, "little")
                       + (height - 1).to_bytes(3, "little"))


def _vp8l_flat(size_wh: tuple[int, int]) -> bytes:
    """The VP8L chunk of a lossless WebP of one colour (a few hundred bytes even at 12 MP)."""
    buffer = io.BytesIO()
    Image.new("RGB", size_wh, (90, 120, 30)).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()[12:]


def webp_with_unknown_chunks(units: int, size_wh: tuple[int, int] = SIZE_WH) -> bytes:
    """A one-colour VP8X WebP of ``size_wh`` with ``units`` empty unknown chunks (8 bytes each)."""
    return _webp(_vp8x(0, size_wh) + _riff_chunk(b"XYZW", b"") * units + _vp8l_flat(size_wh))


def webp_with_animation_frames(units: int, canvas_wh: tuple[int, int] = SIZE_WH) -> bytes:
    """An animated WebP of a ``canvas_wh`` canvas and ``units`` frames of 1x1 pixel (ANMF chunks)."""
    header = bytes(12) + (0).to_bytes(3, "little") + b"\0"  # x, y, width - 1, height - 1 (all 0), duration 0, flags
    frame = _riff_chunk(b"ANMF", header[:12] + (1).to_bytes(3, "little") + b"\0" + _vp8l_flat((1, 1)))
    return _webp(_vp8x(0x02, canvas_wh) + _riff_chunk(b"ANIM", bytes(6)) + frame * units)


def mpo_with_frames_outside_the_file(units: int) -> bytes:
    """The 64x48 JPEG as an MPO whose MP index lists ``units`` frames, all but the first at an
    offset far past the end of the file (the index is one APP2 segment: at most 4,092 frames)."""
    frames = struct.pack("<LLLHH", 0x030000, 1000, 0, 0, 0) + struct.pack("<LLLHH", 0, 1000, 0xFFFFFF00, 0, 0) * (units - 1)
    entries_at = 8 + 2 + 12 * 3 + 4
    ifd = struct.pack("<H", 3) + struct.pack("<HHI", 0xB000, 7, 4) + b"0100"  # MP format version
    ifd += struct.pack("<HHII", 0xB001, 4, 1, units) + struct.pack("<HHII", 0xB002, 7, len(frames), entries_at)
    payload = b"MPF\0II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + frames
    data = _saved("JPEG")
    return data[:2] + b"\xff\xe2" + struct.pack(">H", 2 + len(payload)) + payload + data[2:]


def zipped_request(image: bytes, points: list[dict[str, float]], **options: object) -> bytes:
    """An ``application/zip`` request (image.bin, points.json), deflated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("image.bin", image)
        archive.writestr("points.json", json.dumps({"points": points, **options}))
    return buffer.getvalue()
