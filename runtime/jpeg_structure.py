"""Counting a JPEG's scans and segments from its markers, before any pixel is decoded.

A progressive JPEG is decoded scan by scan, and each scan touches every coefficient of the
components it covers: a small file that repeats its last scan (and Huffman table) 1,500
times costs minutes of CPU at 64 MP. libjpeg-turbo's tools bound this with a scan limit
(``djpeg -maxscans``); Pillow exposes none, so we walk the marker structure ourselves:
segment lengths, and the entropy-coded data after each start-of-scan up to the next marker
(0xFF followed by anything but a stuffed 0x00 or a restart marker). Only the first image
of a multi-picture file (MPO) counts: Pillow decodes that one.
"""

from __future__ import annotations

from dataclasses import dataclass

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7 carry no length


@dataclass(frozen=True)
class JpegStructure:
    """``scans``: start-of-scan markers seen; ``segments``: marker segments of any kind."""

    scans: int
    segments: int


def count_jpeg_structure(data: bytes, stop_after_scans: int) -> JpegStructure:
    """Walk the markers of ``data`` (a JPEG file) up to its first end-of-image.

    Stops early once more than ``stop_after_scans`` scans are seen (the answer is then
    ``stop_after_scans + 1``). Bytes between segments are skipped, as libjpeg skips them, so
    junk cannot hide the scans behind it. Truncated data ends the walk quietly: the decoder
    reports it.
    """
    scans = segments = 0
    if data[:2] != b"\xff\xd8":
        return JpegStructure(0, 0)
    position, size = 2, len(data)
    while position + 1 < size:
        if data[position] != 0xFF:  # junk between segments: libjpeg skips it (with a warning) and decodes on
            position = data.find(b"\xff", position)
            if position < 0:
                break
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        position += 2
        if marker == EOI:
            break
        if marker in _STANDALONE or marker == SOI:
            continue
        if position + 2 > size:
            break
        length = int.from_bytes(data[position:position + 2], "big")
        segments += 1
        position += length
        if marker == SOS:
            scans += 1
            if scans > stop_after_scans:
                break
            position = _end_of_entropy_data(data, position)
    return JpegStructure(scans, segments)


def _end_of_entropy_data(data: bytes, position: int) -> int:
    """The offset of the first marker after entropy-coded data starting at ``position``."""
    while True:
        found = data.find(b"\xff", position)
        if found < 0 or found + 1 >= len(data):
            return len(data)
        following = data[found + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            position = found + 1 if following == 0xFF else found + 2
            continue
        return found
