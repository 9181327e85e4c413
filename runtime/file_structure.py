"""Bounding the structural units of an image file before Pillow walks them.

Pillow parses some structures one unit per Python step, and nothing in a file bounds how
many units it has: a small (or zip-deflated) upload could buy seconds of CPU and gigabytes
of memory before a pixel is decoded. Each walker here counts the units Pillow would walk,
stopping one past its limit, so its own cost is bounded too; ``check_file_structure``
refuses a file over a limit with ``PayloadTooLarge`` (413) before Pillow opens it.

- JPEG: marker segments and the fill/junk bytes before the first scan (``runtime.jpeg_structure``).
- PNG: chunks (ancillary chunks and IDAT chunks alike are one Python step each).
- GIF: extension sub-blocks before the first image (a comment of one-byte sub-blocks).
- TIFF: first-IFD entries, and the values of any multi-byte tag (strip/tile offsets).
- BMP: run-length-encoded pixel data (Pillow's RLE decoder is Python, one escape per step).
- WebP: RIFF chunks, an animation frame's own chunks included (libwebp's demuxer keeps a record
  of each), chunk sizes against the file, and the VP8X canvas against the pixel limit (libwebp
  allocates two canvases when Pillow opens the file) (``runtime.webp_structure``).
- MPO (multi-picture JPEG): nothing more to bound. Pillow reads the MP index from one APP2
  segment (at most 64 KiB: 4,092 frame entries, ~10 ms) and decodes only the first frame; the
  offsets of the others are never followed, so offsets outside the file cost nothing.

The file's size against its pixels is checked after the header (``check_file_size``): a
file far larger than its pixels can justify is padding or trailing data.
"""

from __future__ import annotations

import struct

from runtime.errors import InvalidImage, PayloadTooLarge
from runtime.jpeg_structure import count_jpeg_structure
from runtime.webp_structure import count_webp_structure, is_webp

#: Marker segments (tables, scans, metadata) a JPEG may have: real files have tens.
MAX_JPEG_SEGMENTS = 4096
#: Fill (0xFF) and junk bytes outside segments before a JPEG's first scan: encoders write none.
MAX_JPEG_STRAY_BYTES = 65536
#: PNG chunks: encoders write 8-64 KiB IDAT chunks, so a 64 MiB PNG has at most ~8,200.
MAX_PNG_CHUNKS = 16384
#: Extension sub-blocks before a GIF's first image (comments, application data): real files have a few.
MAX_GIF_SUB_BLOCKS = 4096
#: Entries of a TIFF's first IFD (real files have 10-40) and values of one multi-byte tag
#: (strip or tile offsets: a 64 MP image has at most a few thousand strips or tiles).
MAX_TIFF_IFD_ENTRIES = 1024
MAX_TIFF_TAG_VALUES = 16384
#: Run-length-encoded BMP pixel data: Pillow decodes it one escape per Python step (1 MiB: ~0.25 s).
MAX_BMP_RLE_BYTES = 1 << 20
#: RIFF chunks of a WebP, an animation frame's own chunks included: a still has at most 6
#: (VP8X, ICCP, ALPH, VP8 or VP8L, EXIF, XMP); an animation has one to three a frame.
MAX_WEBP_CHUNKS = 4096
#: A file may hold this much besides its pixels (EXIF, ICC profile, XMP, thumbnails, an MPO preview) ...
MAX_FILE_OVERHEAD_BYTES = 2 << 20
#: ... plus this many bytes per pixel (16-bit RGBA stored uncompressed).
MAX_FILE_BYTES_PER_PIXEL = 8

_TIFF_TYPE_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8,
                    18: 8}


def check_file_structure(data: bytes, max_jpeg_scans: int, max_pixels: int) -> None:
    """Refuse (``PayloadTooLarge``) a file whose structure exceeds a unit limit; others pass.

    The format is told by the file's signature; malformed structure is left to Pillow to
    report (the walkers stop quietly at truncation), except a WebP chunk that runs past the end
    of the file (``InvalidImage``: libwebp would otherwise wait for data that never comes).
    """
    if data[:2] == b"\xff\xd8":
        _check_jpeg(data, max_jpeg_scans)
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        _refuse_over("PNG chunks", _count_png_chunks(data, MAX_PNG_CHUNKS), MAX_PNG_CHUNKS)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        _refuse_over("GIF extension sub-blocks", _count_gif_sub_blocks(data, MAX_GIF_SUB_BLOCKS), MAX_GIF_SUB_BLOCKS)
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        _check_tiff(data)
    elif data[:2] == b"BM":
        _check_bmp(data)
    elif is_webp(data):
        _check_webp(data, max_pixels)


def check_pixel_count(size_wh: tuple[int, int], max_pixels: int, what: str = "image") -> None:
    """Refuse (``PayloadTooLarge``) an image of (W, H) pixels over ``max_pixels``."""
    width, height = size_wh
    if width * height > max_pixels:
        raise PayloadTooLarge(f"the {what} has {width}x{height} = {width * height} pixels, more than the limit "
                              f"of {max_pixels}")


def check_file_size(size_bytes: int, size_wh: tuple[int, int]) -> None:
    """Refuse a file larger than its (W, H) pixels can justify (padding, trailing data)."""
    width, height = size_wh
    allowed = MAX_FILE_OVERHEAD_BYTES + MAX_FILE_BYTES_PER_PIXEL * width * height
    if size_bytes > allowed:
        raise PayloadTooLarge(f"the file has {size_bytes} bytes, more than a {width}x{height} image can justify "
                              f"({allowed} bytes: {MAX_FILE_OVERHEAD_BYTES >> 20} MiB of metadata plus "
                              f"{MAX_FILE_BYTES_PER_PIXEL} per pixel); remove the padding or trailing data")


def _refuse_over(what: str, count: int, limit: int) -> None:
    if count > limit:
        raise PayloadTooLarge(f"the file has more than {limit} {what} (real images have far fewer); re-encode it")


def _check_jpeg(data: bytes, max_jpeg_scans: int) -> None:
    structure = count_jpeg_structure(data, stop_after_scans=max_jpeg_scans, stop_after_segments=MAX_JPEG_SEGMENTS)
    if structure.scans > max_jpeg_scans:
        raise PayloadTooLarge(f"the JPEG has more than {max_jpeg_scans} scans (real photos have at most "
                              "a few dozen); re-encode it")
    _refuse_over("JPEG marker segments", structure.segments, MAX_JPEG_SEGMENTS)
    if structure.stray_bytes_before_scan > MAX_JPEG_STRAY_BYTES:
        raise PayloadTooLarge(f"the JPEG has {structure.stray_bytes_before_scan} fill or junk bytes between its "
                              f"segments, more than the limit of {MAX_JPEG_STRAY_BYTES}; re-encode it")


def _count_png_chunks(data: bytes, stop_after: int) -> int:
    """Chunks from the signature to IEND (or the end of the data), at most ``stop_after + 1``."""
    position, chunks = 8, 0
    while position + 8 <= len(data) and chunks <= stop_after:
        length = int.from_bytes(data[position:position + 4], "big")
        chunks += 1
        if data[position + 4:position + 8] == b"IEND":
            break
        position += 12 + length
    return chunks


def _count_gif_sub_blocks(data: bytes, stop_after: int) -> int:
    """Extension sub-blocks before the first image descriptor, at most ``stop_after + 1``."""
    if len(data) < 13:
        return 0
    packed = data[10]
    position = 13 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)
    sub_blocks = 0
    while position < len(data) and data[position] == 0x21 and sub_blocks <= stop_after:  # an extension
        position += 2
        while position < len(data) and sub_blocks <= stop_after:
            length = data[position]
            position += 1 + length
            if length == 0:
                break
            sub_blocks += 1
    return sub_blocks


def _check_tiff(data: bytes) -> None:
    """First-IFD entries and the value count of each multi-byte tag (classic TIFF and BigTIFF)."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        offset = struct.unpack_from(order + ("Q" if big else "I"), data, 8 if big else 4)[0]
        entries = struct.unpack_from(order + ("Q" if big else "H"), data, offset)[0]
    except struct.error:
        return  # truncated: Pillow reports it
    _refuse_over("TIFF directory entries", entries, MAX_TIFF_IFD_ENTRIES)
    entry_bytes, first = (20, offset + 8) if big else (12, offset + 2)
    entry_format = order + ("HHQ" if big else "HHI")
    for index in range(entries):
        try:
            tag, kind, count = struct.unpack_from(entry_format, data, first + index * entry_bytes)
        except struct.error:
            return
        if _TIFF_TYPE_BYTES.get(kind, 1) > 1 and count > MAX_TIFF_TAG_VALUES:
            raise PayloadTooLarge(f"TIFF tag {tag} has {count} values, more than the limit of {MAX_TIFF_TAG_VALUES} "
                                  "(too many strips or tiles); re-encode it")


def _check_webp(data: bytes, max_pixels: int) -> None:
    structure = count_webp_structure(data, stop_after_chunks=MAX_WEBP_CHUNKS)
    if structure.overrun is not None:
        raise InvalidImage(f"the WebP is truncated or malformed: {structure.overrun}")
    _refuse_over("WebP chunks (an animation's frames and their parts included)", structure.chunks, MAX_WEBP_CHUNKS)
    if structure.canvas_wh is not None:
        check_pixel_count(structure.canvas_wh, max_pixels, "WebP canvas")


def _check_bmp(data: bytes) -> None:
    """Run-length-encoded (RLE8/RLE4) pixel data is bounded; other BMPs are decoded in C."""
    if len(data) < 34:
        return
    pixel_offset, header_bytes = struct.unpack_from("<II", data, 10)
    compression = struct.unpack_from("<I", data, 30)[0] if header_bytes >= 40 else 0
    if compression in (1, 2) and len(data) - pixel_offset > MAX_BMP_RLE_BYTES:
        raise PayloadTooLarge(f"the BMP has {len(data) - pixel_offset} bytes of run-length-encoded pixels, more than "
                              f"the limit of {MAX_BMP_RLE_BYTES}; store it uncompressed or as PNG")
