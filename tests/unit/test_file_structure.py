"""Structural-unit bounds: a file's decode cost follows its pixels, not how it is built (issue 24)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from runtime import file_structure as fs
from runtime.errors import InvalidImage, PayloadTooLarge
from runtime.image_files import ImageLimits, probe_image, read_image
from runtime.jpeg_structure import count_jpeg_structure
from runtime.webp_structure import WebPStructure, count_webp_structure
from tests import hostile_files as bombs

#: (builder, units just within its limit, units far over it, words of the refusal).
CASES: list[tuple[Callable[[int], bytes], int, int, str]] = [
    (bombs.jpeg_with_fill_bytes, fs.MAX_JPEG_STRAY_BYTES, 4_000_000, "fill or junk bytes"),
    (bombs.jpeg_with_empty_comments, fs.MAX_JPEG_SEGMENTS - 20, 2_000_000, "JPEG marker segments"),
    (bombs.png_with_ancillary_chunks, fs.MAX_PNG_CHUNKS - 10, 1_000_000, "PNG chunks"),
    (bombs.gif_with_comment_sub_blocks, fs.MAX_GIF_SUB_BLOCKS, 4_000_000, "GIF extension sub-blocks"),
    (bombs.tiff_with_strips, 1, 1_000_000, "TIFF tag 273"),
    (bombs.bmp_with_rle_escapes, 200_000, 4_000_000, "run-length-encoded"),
    (bombs.webp_with_unknown_chunks, fs.MAX_WEBP_CHUNKS - 2, 1_000_000, "WebP chunks"),  # + VP8X and VP8L
    (bombs.webp_with_animation_frames, (fs.MAX_WEBP_CHUNKS - 2) // 2, 500_000, "WebP chunks"),  # 2 chunks a frame
]


@pytest.mark.parametrize(("build", "within", "over", "words"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_structure_bombs_are_refused_before_pillow_walks_them(build: Callable[[int], bytes], within: int, over: int,
                                                              words: str) -> None:
    bomb = build(over)
    started = time.process_time()
    with pytest.raises(PayloadTooLarge, match=words):
        probe_image(bomb)
    assert time.process_time() - started < 0.2
    reference = np.asarray(read_image(build(1)))
    assert np.array_equal(np.asarray(read_image(build(within))), reference)  # the same pixels, still accepted


def test_padding_after_the_image_is_refused_by_the_size_rule() -> None:
    width, height = bombs.SIZE_WH
    allowed = fs.MAX_FILE_OVERHEAD_BYTES + fs.MAX_FILE_BYTES_PER_PIXEL * width * height
    plain = bombs.png_with_trailing_bytes(0)
    assert read_image(bombs.png_with_trailing_bytes(allowed - len(plain))).size == bombs.SIZE_WH
    with pytest.raises(PayloadTooLarge, match="more than a 64x48 image can justify"):
        probe_image(bombs.png_with_trailing_bytes(allowed - len(plain) + 1))


def test_the_jpeg_walk_counts_fill_bytes_before_the_first_scan_only() -> None:
    plain = bombs.jpeg_with_fill_bytes(0)
    assert count_jpeg_structure(plain, 100).stray_bytes_before_scan == 0
    assert count_jpeg_structure(bombs.jpeg_with_fill_bytes(1000), 100).stray_bytes_before_scan == 1000
    end = plain.rindex(b"\xff\xd9")
    after_scan = plain[:end] + b"\xff" * 5000 + plain[end:]  # libjpeg skips these in C
    assert count_jpeg_structure(after_scan, 100) == count_jpeg_structure(plain, 100)
    started = time.process_time()
    stuffed = plain[:end] + b"\xff\x00" * 4_000_000 + plain[end:]  # 8 MB of stuffed entropy bytes
    assert count_jpeg_structure(stuffed, 100).scans == 1
    assert time.process_time() - started < 0.5


def test_a_probed_upload_is_parsed_once() -> None:
    """read_image takes the file probe_image opened: the header is not parsed a second time."""
    data = bombs.jpeg_with_fill_bytes(0)
    header = probe_image(data)
    opened = header.opened.take()
    assert opened is not None and header.opened.take() is None
    header = probe_image(data)
    assert np.array_equal(np.asarray(read_image(data, probed=header)), np.asarray(read_image(data)))
    assert header.opened.take() is None  # handed over: the header no longer holds the image


def test_a_webp_canvas_over_the_pixel_limit_is_refused_before_libwebp_allocates_it() -> None:
    """The VP8X canvas is read by the walk; Pillow's own check came after libwebp's decoder had
    allocated two canvases of W x H x 4 bytes (and, below 2x Pillow's limit, did not stop it)."""
    animation = bombs.webp_with_animation_frames(1, (10_000, 10_000))  # one 1x1 frame on a 100 MP canvas
    with pytest.raises(PayloadTooLarge, match="WebP canvas has 10000x10000 = 100000000 pixels"):
        fs.check_file_structure(animation, max_jpeg_scans=100, max_pixels=64_000_000)
    with pytest.raises(PayloadTooLarge, match="WebP canvas has 64x48"):  # the limit is the configured one
        probe_image(bombs.webp_with_unknown_chunks(0), ImageLimits(max_pixels=3000))
    assert probe_image(bombs.webp_with_unknown_chunks(0), ImageLimits(max_pixels=3072)).stored_size_wh == (64, 48)


def test_a_webp_chunk_past_the_end_of_the_file_is_a_clear_400() -> None:
    whole = bombs.webp_with_unknown_chunks(1)
    lying = whole[:16] + (1 << 30).to_bytes(4, "little") + whole[20:]  # the VP8X chunk claims 1 GiB
    with pytest.raises(InvalidImage, match="chunk b'VP8X' at byte 12 declares 1073741824 bytes, past the end of the file"):
        probe_image(lying)
    with pytest.raises(InvalidImage, match="the RIFF header declares"):
        probe_image(whole[:-1])
    assert count_webp_structure(whole, 100) == WebPStructure(3, (64, 48), None)


def test_an_mpo_decodes_its_first_frame_and_never_follows_the_other_offsets() -> None:
    """Main already bounded this (Pillow reads the MP index from one 64 KiB segment and decodes
    only the first frame): 4,092 frames at offsets outside the file cost milliseconds."""
    mpo = bombs.mpo_with_frames_outside_the_file(4092)
    started = time.process_time()
    header = probe_image(mpo)
    decoded = read_image(mpo, probed=header)
    assert time.process_time() - started < 0.2
    assert header.format == "MPO"
    assert np.array_equal(np.asarray(decoded), np.asarray(read_image(bombs.jpeg_with_fill_bytes(0))))


def test_an_animation_frame_counts_with_its_own_chunks() -> None:
    """An ANMF frame is one chunk holding others (here a VP8L): 2 a frame, so one frame past
    (MAX_WEBP_CHUNKS - VP8X - ANIM) / 2 is refused."""
    frames = (fs.MAX_WEBP_CHUNKS - 2) // 2
    assert count_webp_structure(bombs.webp_with_animation_frames(frames), fs.MAX_WEBP_CHUNKS).chunks == fs.MAX_WEBP_CHUNKS
    with pytest.raises(PayloadTooLarge, match="WebP chunks"):
        probe_image(bombs.webp_with_animation_frames(frames + 1))
