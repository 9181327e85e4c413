"""Preprocessing equals SamPredictor's (torchvision ResizeLongestSide + Sam.preprocess)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.utils.transforms import ResizeLongestSide

from runtime.sam_preprocessing import Preprocessor, resized_size_hw, to_model_coords
from synthetic.test_images import synthetic_image

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@pytest.mark.parametrize("size_hw", [(1, 1), (180, 300), (600, 800), (1500, 700), (1024, 1024), (2000, 3000), (3, 2500)])
def test_encoder_input_is_bit_identical_to_sam(size_hw: tuple[int, int], tiny_sam) -> None:  # type: ignore[no-untyped-def]
    image = synthetic_image(size_hw, seed=1)
    transform = ResizeLongestSide(1024)
    resized = transform.apply_image(image)
    reference = tiny_sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]).numpy()
    prepared = Preprocessor(1024, MEAN, STD).prepare(Image.fromarray(image))
    assert prepared.input_size_hw == resized.shape[:2] == resized_size_hw(size_hw, 1024)
    assert prepared.orig_size_hw == size_hw
    np.testing.assert_array_equal(prepared.tensor, reference)


def test_coordinates_map_like_apply_coords() -> None:
    rng = np.random.default_rng(0)
    transform = ResizeLongestSide(1024)
    for size in [(3024, 4032), (4032, 3024), (180, 300), (1, 1)]:
        points = rng.uniform(0, max(size), (7, 3, 2))
        expected = transform.apply_coords(points, size).astype(np.float32)
        np.testing.assert_array_equal(to_model_coords(points, size, 1024), expected)


def test_rejects_non_rgb_and_bad_size() -> None:
    with pytest.raises(ValueError, match="RGB"):
        Preprocessor(1024, MEAN, STD).prepare(Image.new("L", (4, 4)))
    with pytest.raises(ValueError):
        Preprocessor(0, MEAN, STD)
