"""Image decoding: formats, EXIF orientation, modes, and refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from runtime.errors import InvalidImage, PayloadTooLarge
from runtime.image_files import read_image
from tests.reference import encode

RGB = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_decode_to_the_same_rgb(fmt: str) -> None:
    params = {"lossless": True} if fmt == "WEBP" else {}
    image = read_image(encode(RGB, fmt, **params))
    assert image.mode == "RGB" and image.size == (60, 40)
    np.testing.assert_array_equal(np.asarray(image), RGB)


def test_jpeg_decodes_close_to_the_source() -> None:
    smooth = np.repeat(np.repeat(RGB[::8, ::8], 8, axis=0), 8, axis=1)[:40, :56]
    image = np.asarray(read_image(encode(np.ascontiguousarray(smooth), "JPEG", quality=95)), dtype=np.int16)
    assert image.shape == smooth.shape
    assert np.abs(image - smooth).mean() < 8


def test_exif_orientation_is_applied() -> None:
    upright = RGB
    stored = np.rot90(upright, k=1)  # what a phone stores when it says "rotate 90 CW to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(np.ascontiguousarray(stored)), "PNG", exif=exif)
    decoded = np.asarray(read_image(data))
    assert decoded.shape == upright.shape
    np.testing.assert_array_equal(decoded, upright)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "1"])
def test_modes_convert_to_rgb(mode: str) -> None:
    source = Image.fromarray(RGB).convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    decoded = read_image(encode(source, fmt))
    assert decoded.mode == "RGB" and decoded.size == (60, 40)
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(source.convert("RGB")))


def test_sixteen_bit_keeps_high_byte() -> None:
    samples = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    decoded = np.asarray(read_image(encode(Image.fromarray(samples), "PNG")))
    np.testing.assert_array_equal(decoded[0, :, 0], [0, 0, 1, 255])


def test_palette_with_transparency_converts() -> None:
    image = Image.new("P", (5, 5), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image.info["transparency"] = 0
    assert np.asarray(read_image(encode(image, "PNG")))[0, 0].tolist() == [200, 100, 50]


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    assert tuple(np.asarray(read_image(buffer.getvalue()))[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"hello, this is text", "not an image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "could not be decoded|not an image"),
    (b"%PDF-1.4 fake", "not an image"),
])
def test_bad_data_is_invalid_image(data: bytes, match: str) -> None:
    with pytest.raises(InvalidImage, match=match):
        read_image(data)


def test_truncated_jpeg_is_invalid_image() -> None:
    data = encode(np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8), "JPEG", quality=95)
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        read_image(data[: len(data) // 2])


def test_pixel_limit_is_checked_from_the_header() -> None:
    with pytest.raises(PayloadTooLarge, match="2400 pixels, more than the limit of 1000"):
        read_image(encode(RGB, "PNG"), max_pixels=1000)


def test_decompression_bomb_is_refused_by_default() -> None:
    bomb = encode(Image.new("L", (10_000, 10_000)), "PNG")
    assert len(bomb) < 200_000
    with pytest.raises(PayloadTooLarge):
        read_image(bomb)
