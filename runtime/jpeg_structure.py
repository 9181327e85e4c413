"""Counting a JPEG's scans, segments and stray bytes from its markers, before any pixel is decoded.

A progressive JPEG is decoded scan by scan, and each scan touches every coefficient of the
components it covers: a small file that repeats its last scan (and Huffman table) 1,500
times costs minutes of CPU at 64 MP. libjpeg-turbo's tools bound this with a scan limit
(``djpeg -maxscans``); Pillow exposes none, so we walk the marker structure ourselves:
segment lengths, and the entropy-coded data after each start-of-scan up to the next marker
(0xFF followed by anything but a stuffed 0x00 or a restart marker). Only the first image
of a multi-picture file (MPO) counts: Pillow decodes that one.

Pillow reads everything before the first scan one byte per Python step (0xFF fill bytes,
junk between segments) and one Python step per segment (a file of empty COM segments): the
walk counts those units so they can be bounded before Pillow opens the file. The walk itself
skips runs of fill bytes and entropy-coded data with C-speed searches, and stops after
``stop_after_segments`` segments, so its own cost is bounded too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RST0-7 carry no length
#: A marker ends entropy-coded data: 0xFF (after any fill bytes) then anything but 0x00 or RST0-7.
_MARKER_AFTER_ENTROPY = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")
_FILL = re.compile(rb"\xff+")


@dataclass(frozen=True)
class JpegStructure:
    """``scans``: start-of-scan markers seen; ``segments``: marker segments of any kind;
    ``stray_bytes_before_scan``: fill (0xFF) and junk bytes outside segments before the first scan."""

    scans: int
    segments: int
    stray_bytes_before_scan: int = 0


def count_jpeg_structure(data: bytes, stop_after_scans: int, stop_after_segments: int = 1 << 62) -> JpegStructure:
    """Walk the markers of ``data`` (a JPEG file) up to its first end-of-image.

    Stops early once more than ``stop_after_scans`` scans (the answer is then
    ``stop_after_scans + 1``) or more than ``stop_after_segments`` segments are seen. Bytes between
    segments are skipped, as libjpeg skips them, so junk cannot hide the scans behind it.
    Truncated data ends the walk quietly: the decoder reports it.
    """
    scans = segments = stray = 0
    if data[:2] != b"\xff\xd8":
        return JpegStructure(0, 0)
    position, size = 2, len(data)
    while position + 1 < size:
        start = position
        if data[position] != 0xFF:  # junk between segments: libjpeg skips it (with a warning) and decodes on
            position = data.find(b"\xff", position)
            if position < 0:
                break
        fill = _FILL.match(data, position)
        position = fill.end() - 1 if fill else position  # the last 0xFF of a run starts the marker
        if scans == 0:
            stray += position - start
        if position + 1 >= size:
            break
        marker = data[position + 1]
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
        if segments > stop_after_segments:
            break
        if marker == SOS:
            scans += 1
            if scans > stop_after_scans:
                break
            position = _end_of_entropy_data(data, position)
    return JpegStructure(scans, segments, stray)


def _end_of_entropy_data(data: bytes, position: int) -> int:
    """The offset of the first marker (its last 0xFF) after entropy-coded data starting at ``position``."""
    found = _MARKER_AFTER_ENTROPY.search(data, position)
    return len(data) if found is None else found.end() - 2
