"""Hostile and broken inputs, each answered with a clear 4xx before any model work (issue 14)."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from runtime.errors import BadRequest, InvalidImage, InvalidPoints, OutputTooLarge, PayloadTooLarge
from runtime.image_files import DEFAULT_MAX_JPEG_SCANS, ImageLimits, probe_image, read_image
from runtime.jpeg_structure import count_jpeg_structure
from runtime.outputs import OutputOptions, check_output_size, check_per_click_masks, cutout_rgba, write_result
from runtime.sam_preprocessing import check_resizable
from serving.contract import parse_json, parse_raw_image, parse_zip
from serving.sessions import check_session_header
from tests.reference import encode, zip_archive

PNG = encode(np.zeros((20, 30, 3), np.uint8))
HUGE = int("9" * 320)


@pytest.mark.parametrize("document", [
    {"points": [{"x": HUGE, "y": 1}]},
    {"points": [{"x": 1, "y": -HUGE}]},
    {"points": [{"x": 1, "y": 1}], "box": [0, 0, HUGE, 5]},
])
def test_integers_beyond_float_range_are_400(document: dict[str, object]) -> None:
    with pytest.raises(InvalidPoints, match="far too large"):
        parse_json(json.dumps({"image_base64": base64.b64encode(PNG).decode(), **document}))
    with pytest.raises(InvalidPoints, match="far too large"):
        parse_zip(zip_archive({"image.bin": PNG, "points.json": json.dumps(document).encode()}), 16, 1 << 20)


@pytest.mark.parametrize("attributes", ["points=1,1&min_area=99999999999999999999", "points=1,1&max_side=" + "9" * 30])
def test_integer_options_beyond_int64_are_400(attributes: str) -> None:
    with pytest.raises(BadRequest, match="must be <="):
        parse_raw_image(PNG, attributes)
    with pytest.raises(BadRequest, match="must be <="):
        parse_json(json.dumps({"image_base64": base64.b64encode(PNG).decode(), "points": [{"x": 1, "y": 1}],
                               "min_area": 2**63}))


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA])
def test_corrupt_compressed_member_is_400(compression: int) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes() + b"\x00" * 4000
    data = bytearray(zip_archive({"image.bin": noisy, "points.json": b'{"points": []}'}, compression))
    start = data.index(b"image.bin") + len(b"image.bin") + 40  # inside the compressed stream
    for offset in range(0, 200, 7):
        data[start + offset] ^= 0x5A
    with pytest.raises(BadRequest, match="zip member image.bin cannot be read"):
        parse_zip(bytes(data), 16, 1 << 20)


def test_zip_needing_an_unknown_version_is_400() -> None:
    data = bytearray(zip_archive({"image.bin": PNG, "points.json": b'{"points": []}'}))
    central = data.index(b"PK\x01\x02")
    data[central + 6] = 0xFF  # "version needed to extract" of the first central-directory entry
    data[central + 7] = 0xFF
    with pytest.raises(BadRequest, match="not supported|not a valid zip"):
        parse_zip(bytes(data), 16, 1 << 20)


def test_encrypted_zip_member_is_named_without_internals() -> None:
    data = bytearray(zip_archive({"image.bin": PNG, "points.json": b'{"points": []}'}))
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = data.index(signature)
        flags = struct.unpack_from("<H", data, position + flag_offset)[0]
        struct.pack_into("<H", data, position + flag_offset, flags | 0x1)
    with pytest.raises(BadRequest) as info:
        parse_zip(bytes(data), 16, 1 << 20)
    assert "encrypted" in info.value.message and "ZipInfo" not in info.value.message


@pytest.mark.parametrize("attributes", [
    "points=\u0661\u0660,\u0661\u0660",  # Arabic-Indic digits: float() takes them
    "points=%D9%A1%D9%A0,10",  # the same, percent-encoded ASCII
    "points=\uff11\uff10,10",  # fullwidth digits
    "points=1_0,10",  # float() takes underscores
    "points=10,10&max_side=1_000",
    "points=10,10&max_side=\u0661\u0660\u0660",
])
def test_custom_attribute_numbers_are_ascii_decimals(attributes: str) -> None:
    with pytest.raises(BadRequest):
        parse_raw_image(PNG, attributes)


def test_custom_attributes_follow_sagemakers_limit() -> None:
    with pytest.raises(BadRequest, match="1024"):
        parse_raw_image(PNG, "points=" + ";".join(["10,10"] * 200))
    assert parse_raw_image(PNG, "points=10,10;20.5,3e1").clicks[1].y == 30.0


@pytest.mark.parametrize("image_id", ["0" * 32 + "\n", "0" * 32 + "\r\n", "\n" + "0" * 32])
def test_image_id_must_match_whole(image_id: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_json(json.dumps({"image_id": image_id, "points": [{"x": 1, "y": 1}]}))
    assert "\n" not in info.value.message


def test_session_id_must_match_whole() -> None:
    with pytest.raises(BadRequest):
        check_session_header("abc\n")
    assert check_session_header("a-b-c") == "a-b-c"


@pytest.mark.parametrize("size_wh", [(1, 3000), (3000, 1), (1, 20000), (2, 4200)])
def test_extreme_aspect_ratios_are_refused_clearly(size_wh: tuple[int, int]) -> None:
    width, height = size_wh
    with pytest.raises(InvalidImage, match="aspect ratio is beyond 2048:1"):
        check_resizable((height, width), 1024)


def test_the_widest_servable_aspect_ratio_passes() -> None:
    check_resizable((1, 2048), 1024)  # the short side rounds to 1 pixel
    check_resizable((2048, 1), 1024)


def _progressive_jpeg_with_scans(extra_scans: int, size: int = 64, flat: bool = False) -> bytes:
    """A valid progressive JPEG whose last scan (and the Huffman table before it) is repeated.

    ``flat``: a grey picture, whose scans are a few hundred bytes at any size (the bomb's shape:
    the issue's 8000x8000 with 1,500 scans was 551 KB).
    """
    rng = np.random.default_rng(5)
    pixels = np.full((size, size, 3), 128, np.uint8) if flat else rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    data = encode(pixels, "JPEG", progressive=True, quality=90)
    last_sos = data.rindex(b"\xff\xda")
    last_dht = data.rindex(b"\xff\xc4", 0, last_sos)
    block = data[last_dht if last_sos - last_dht < 2000 else last_sos:-2]
    return data[:-2] + block * extra_scans + b"\xff\xd9"


def test_jpeg_scans_are_counted() -> None:
    plain = encode(np.zeros((16, 16, 3), np.uint8), "JPEG")
    assert count_jpeg_structure(plain, 100).scans == 1
    progressive = _progressive_jpeg_with_scans(0)
    base = count_jpeg_structure(progressive, 100).scans
    assert 6 <= base <= 12  # libjpeg's standard progressive script
    assert count_jpeg_structure(_progressive_jpeg_with_scans(20), 100).scans == base + 20
    assert count_jpeg_structure(_progressive_jpeg_with_scans(500), 100).scans == 101  # stops early


def test_junk_between_segments_does_not_hide_the_scans() -> None:
    """libjpeg skips stray bytes before a marker and decodes on; the scan count must not stop there."""
    bomb = _progressive_jpeg_with_scans(400, size=64, flat=True)
    first_scan = bomb.index(b"\xff\xda")
    for junk in (b"\x00", b"\x12\x34\x56"):
        hidden = bomb[:first_scan] + junk + bomb[first_scan:]
        assert count_jpeg_structure(hidden, 100).scans == 101
        with pytest.raises(PayloadTooLarge, match="scans"):
            probe_image(hidden)


def test_scan_bomb_is_refused_before_decoding() -> None:
    bomb = _progressive_jpeg_with_scans(1500, size=4000, flat=True)
    assert len(bomb) < 6 << 20
    started = time.process_time()
    with pytest.raises(PayloadTooLarge, match=f"more than {DEFAULT_MAX_JPEG_SCANS} scans"):
        probe_image(bomb)
    assert time.process_time() - started < 1.0
    with pytest.raises(PayloadTooLarge):
        read_image(bomb)
    ok = _progressive_jpeg_with_scans(20)
    assert read_image(ok).size == (64, 64)
    with pytest.raises(PayloadTooLarge, match="more than 5 scans"):
        read_image(ok, limits=ImageLimits(max_jpeg_scans=5))


def test_bomb_messages_quote_our_pixel_limit() -> None:
    huge = encode(Image.new("1", (14_000, 14_000)), "PNG")  # 196 MP: Pillow's own bomb error fires first
    with pytest.raises(PayloadTooLarge) as info:
        read_image(huge)
    assert "64000000" in info.value.message and "178956970" not in info.value.message


def test_upright_size_comes_from_the_header_with_exif() -> None:
    image = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    header = probe_image(buffer.getvalue())
    assert header.stored_size_wh == (50, 30) and header.upright_size_hw == (50, 30)
    assert read_image(buffer.getvalue()).size == (30, 50)


def test_out_of_memory_is_ours_not_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(self: Image.Image) -> None:
        raise MemoryError("fault injection")

    monkeypatch.setattr(Image.Image, "load", exhausted)
    with pytest.raises(MemoryError):
        read_image(PNG)


@pytest.mark.parametrize("size_hw", [(4000, 4000), (100, 16384), (6000, 8000)])
def test_webp_outputs_webp_cannot_hold_are_refused_with_a_max_side_that_fits(size_hw: tuple[int, int]) -> None:
    with pytest.raises(OutputTooLarge) as info:
        check_output_size(size_hw, OutputOptions(result_format="webp"))
    suggested = int(info.value.message.split("set outputs.max_side to ")[1].split()[0])
    height, width = size_hw
    scale = suggested / max(height, width)
    fitted = (max(1, round(height * scale)), max(1, round(width * scale)))
    check_output_size(fitted, OutputOptions(result_format="webp"))
    check_output_size(size_hw, OutputOptions(result_format="png"))


def test_a_12_mp_noise_cut_out_encodes_as_webp() -> None:
    """The worst content for libwebp's first partition, at a phone photo's size."""
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (3024, 4032, 3), dtype=np.uint8))
    mask = np.zeros((3024, 4032), bool)
    mask[:1000, :1000] = True
    check_output_size((3024, 4032), OutputOptions(result_format="webp"))
    assert write_result(cutout_rgba(rgb, mask), OutputOptions(result_format="webp"))[:4] == b"RIFF"


def test_per_click_masks_beyond_the_budget_are_refused_with_a_max_side_that_fits() -> None:
    check_per_click_masks((3024, 4032), 64)  # 64 masks of 12 MP: 93 MiB packed
    with pytest.raises(OutputTooLarge) as info:
        check_per_click_masks((8000, 8000), 64)  # 512 MB packed
    suggested = int(info.value.message.split("set outputs.max_side to ")[1].split()[0])
    check_per_click_masks((suggested, suggested), 64)
    with pytest.raises(OutputTooLarge):
        check_per_click_masks((suggested + 8, suggested + 8), 64)
