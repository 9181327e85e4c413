"""Output images: cut-out alpha, PNG/WebP encodings, 8-bit and 1-bit masks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from runtime.outputs import OutputOptions, cutout_rgba, write_mask, write_result

RGB = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
MASK = np.zeros((30, 50), bool)
MASK[5:20, 10:30] = True


def test_cutout_keeps_rgb_and_sets_alpha() -> None:
    rgba = np.asarray(cutout_rgba(Image.fromarray(RGB), MASK))
    np.testing.assert_array_equal(rgba[..., :3], RGB)
    assert set(np.unique(rgba[..., 3][MASK])) == {255}
    assert set(np.unique(rgba[..., 3][~MASK])) == {25}


def test_cutout_rejects_mismatched_mask() -> None:
    with pytest.raises(ValueError, match="does not match"):
        cutout_rgba(Image.fromarray(RGB), MASK[:10])


def test_png_result_round_trips_exactly() -> None:
    rgba = cutout_rgba(Image.fromarray(RGB), MASK)
    decoded = Image.open(io.BytesIO(write_result(rgba, OutputOptions())))
    assert decoded.format == "PNG" and decoded.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(decoded), np.asarray(rgba))


def test_webp_result_keeps_alpha_exactly() -> None:
    rgba = cutout_rgba(Image.fromarray(RGB), MASK)
    decoded = Image.open(io.BytesIO(write_result(rgba, OutputOptions(result_format="webp"))))
    assert decoded.format == "WEBP" and decoded.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(decoded)[..., 3], np.asarray(rgba)[..., 3])


@pytest.mark.parametrize("fmt,mode", [("png", "L"), ("png1", "1")])
def test_masks_round_trip(fmt: str, mode: str) -> None:
    decoded = Image.open(io.BytesIO(write_mask(MASK, fmt)))  # type: ignore[arg-type]
    assert decoded.mode == mode
    values = np.asarray(decoded.convert("L"))
    np.testing.assert_array_equal(values > 0, MASK)
    assert set(np.unique(values)) == {0, 255}


def test_option_bounds() -> None:
    with pytest.raises(ValueError):
        OutputOptions(png_level=10)
    with pytest.raises(ValueError):
        OutputOptions(webp_quality=0)
