"""Walking a WebP file's RIFF chunks before libwebp's demuxer does (``runtime.file_structure``).

Pillow opens every WebP with libwebp's animation decoder, whose demuxer parses the whole file
at once and keeps a record of each chunk it does not know and of each animation frame: 8 M
empty chunks (64 MB, 65 KB zipped) on a flat 12 MP canvas cost +370 MB and 0.5 s of CPU before
the first pixel (measured on main). This walk reads only the chunk headers, stopping one chunk
past its limit, so its own cost is bounded.

Layout: ``RIFF`` u32le(size) ``WEBP``, then chunks ``fourcc`` u32le(size) payload, each padded to
an even length; a VP8X chunk gives the canvas (24-bit width - 1, height - 1), and an ANMF chunk
(an animation frame) holds a 16-byte frame header and then chunks of its own, counted here too.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bytes of the RIFF header (``RIFF``, size, ``WEBP``) and of a chunk header (fourcc, size).
_RIFF_HEADER_BYTES = 12
_CHUNK_HEADER_BYTES = 8
#: Bytes of an ANMF chunk's frame header (x, y, width - 1, height - 1, duration, flags) before its chunks.
_ANMF_HEADER_BYTES = 16


@dataclass(frozen=True)
class WebPStructure:
    """What the walk found: ``chunks`` (an animation frame's own chunks included; at most
    ``stop_after_chunks + 1``), the VP8X canvas (W, H) or None, and the first chunk whose declared
    size runs past the end of the file (or of its frame), described, or None."""

    chunks: int
    canvas_wh: tuple[int, int] | None
    overrun: str | None


def is_webp(data: bytes) -> bool:
    """Whether ``data`` starts as a WebP file (RIFF container, WEBP form type)."""
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def count_webp_structure(data: bytes, stop_after_chunks: int) -> WebPStructure:
    """Walk the chunks of the WebP file ``data`` (see the module docstring)."""
    declared_end = _CHUNK_HEADER_BYTES + int.from_bytes(data[4:8], "little")
    if declared_end > len(data):
        return WebPStructure(0, None, f"the RIFF header declares {declared_end} bytes, the file has {len(data)}")
    walk = _ChunkWalk(data, stop_after_chunks)
    walk.run(_RIFF_HEADER_BYTES, declared_end, in_frame=False)
    return WebPStructure(walk.chunks, walk.canvas_wh, walk.overrun)


class _ChunkWalk:
    """One walk's counters; ``run`` walks the chunks in ``data[start:end]``."""

    def __init__(self, data: bytes, stop_after_chunks: int) -> None:
        self.data, self.stop_after = data, stop_after_chunks
        self.chunks = 0
        self.canvas_wh: tuple[int, int] | None = None
        self.overrun: str | None = None

    def run(self, start: int, end: int, in_frame: bool) -> None:
        position = start
        while position + _CHUNK_HEADER_BYTES <= end and self.chunks <= self.stop_after and self.overrun is None:
            fourcc = self.data[position:position + 4]
            size = int.from_bytes(self.data[position + 4:position + 8], "little")
            payload = position + _CHUNK_HEADER_BYTES
            self.chunks += 1
            if payload + size > end:
                where = "its animation frame" if in_frame else "the file"
                self.overrun = f"chunk {fourcc!r} at byte {position} declares {size} bytes, past the end of {where}"
                return
            if fourcc == b"VP8X" and size >= 10 and self.canvas_wh is None and not in_frame:
                self.canvas_wh = (1 + int.from_bytes(self.data[payload + 4:payload + 7], "little"),
                                  1 + int.from_bytes(self.data[payload + 7:payload + 10], "little"))
            elif fourcc == b"ANMF" and size >= _ANMF_HEADER_BYTES and not in_frame:
                self.run(payload + _ANMF_HEADER_BYTES, payload + size, in_frame=True)
            position = payload + size + (size & 1)
