"""The cut-out's resize graph (``export.prepost_graphs.build_cutout_resize``) on the CPU EP against
the CPU path's Pillow BILINEAR resize, and the device -> host copy size it leaves (issue 21, defect 5)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from PIL import Image

from export.prepost_graphs import CUTOUT_RESIZE_INPUTS, build_cutout_resize
from runtime.device_memory import cutout_copy_bytes


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    """Loaded with ORT_ENABLE_ALL, as the runtime loads graphs (the transpose optimizer runs)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(build_cutout_resize().SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _graph(session: ort.InferenceSession, image: NDArray[np.uint8], out_hw: tuple[int, int]) -> NDArray[np.int64]:
    image_name, size_name = CUTOUT_RESIZE_INPUTS
    (result,) = session.run(None, {image_name: image, size_name: np.asarray(out_hw, dtype=np.int64)})
    assert result.dtype == np.uint8
    return np.asarray(result, dtype=np.int64)


def _pillow(image: NDArray[np.uint8], out_hw: tuple[int, int]) -> NDArray[np.int64]:
    """The CPU path (``runtime.holds``): Pillow's BILINEAR to the output size."""
    resized = Image.fromarray(image).resize((out_hw[1], out_hw[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.int64)


def _smooth_photo(size_hw: tuple[int, int], seed: int) -> NDArray[np.uint8]:
    noise = np.random.default_rng(seed).integers(0, 256, (size_hw[0] // 10, size_hw[1] // 10, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(noise).resize((size_hw[1], size_hw[0]), Image.Resampling.BICUBIC))


@pytest.mark.parametrize(("photo_hw", "out_hw"), [((480, 640), (240, 320)), ((301, 417), (97, 133)),
                                                   ((100, 150), (200, 300)), ((333, 250), (333, 250))])
def test_a_smooth_photo_is_within_one_level_of_pillow_everywhere(
        session: ort.InferenceSession, photo_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
    photo = _smooth_photo(photo_hw, seed=sum(photo_hw))
    got, want = _graph(session, photo, out_hw), _pillow(photo, out_hw)
    assert got.shape == (*out_hw, 3)
    assert np.abs(got - want).max() <= 1
    assert np.mean(got != want) < 0.3  # Pillow rounds in fixed point: a level either way, not a shift


def test_same_size_is_the_photo_itself(session: ort.InferenceSession) -> None:
    photo = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(_graph(session, photo, (37, 53)), photo)


def test_pixel_noise_is_within_one_level_inside_the_border(session: ort.InferenceSession) -> None:
    """The stated bound: one level except the outermost row/column when shrinking."""
    photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    difference = np.abs(_graph(session, photo, (240, 320)) - _pillow(photo, (240, 320)))
    assert difference[1:-1, 1:-1].max() <= 1
    assert difference.max() <= 16


def test_the_copy_is_the_output_pixels_not_the_photo() -> None:
    assert cutout_copy_bytes((1536, 2048)) == 1536 * 2048 * 3
    assert cutout_copy_bytes((3000, 4000)) == 36_000_000  # a 12 MP output is the photo's size
    with pytest.raises(ValueError, match="positive"):
        cutout_copy_bytes((0, 10))
