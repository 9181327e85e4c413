"""SAM preprocessing without torch, equal to ``SamPredictor.set_image`` step by step.

``SamPredictor`` resizes with ``ResizeLongestSide`` (torchvision ``resize`` on a PIL image,
which is Pillow's antialiased BILINEAR), casts to float32, normalizes with the pixel mean
and std, and pads bottom/right with zeros *after* normalizing. We do the same operations in
the same order in Pillow and numpy, so the encoder input is bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from runtime.errors import InvalidImage
from runtime.tensors import HostOrDevice


def resized_size_hw(orig_size_hw: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Size (h, w) after scaling the longest side to ``long_side`` (ResizeLongestSide rule)."""
    old_h, old_w = orig_size_hw
    scale = long_side * 1.0 / max(old_h, old_w)
    return int(old_h * scale + 0.5), int(old_w * scale + 0.5)


def check_resizable(orig_size_hw: tuple[int, int], long_side: int) -> None:
    """Refuse an image whose short side would round to 0 pixels at the model's resolution.

    ``SamPredictor`` fails on such images too (a zero-sized resize), so there is no answer to
    be faithful to: at 1024 that is an aspect ratio beyond 2048:1 (e.g. 1x3000).
    """
    height, width = orig_size_hw
    resized_h, resized_w = resized_size_hw(orig_size_hw, long_side)
    if min(resized_h, resized_w) < 1:
        raise InvalidImage(f"the image is {width}x{height}: its aspect ratio is beyond {2 * long_side}:1, so its short "
                           f"side would be 0 pixels at the model's {long_side}-pixel resolution")


@dataclass(frozen=True)
class PreparedImage:
    """Encoder input plus the geometry needed to map prompts and masks back.

    ``tensor``: float32 1x3xSxS (S = image_size, 1024), normalized, zero-padded bottom/right;
    a numpy array, or a device ``OrtValue`` when the pre-processing graph ran on a GPU.
    ``orig_size_hw``: (H, W) of the upright original image, pixels.
    ``input_size_hw``: (h, w) of the resized image inside the padded square, pixels.
    """

    tensor: HostOrDevice
    orig_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]


class Preprocessor:
    """Turns an RGB image into the encoder's input, as ``SamPredictor`` does."""

    def __init__(
        self,
        image_size: int,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
    ) -> None:
        if image_size <= 0:
            raise ValueError("image_size must be positive")
        self.image_size = image_size
        self._mean = np.asarray(pixel_mean, dtype=np.float32).reshape(3, 1, 1)
        self._std = np.asarray(pixel_std, dtype=np.float32).reshape(3, 1, 1)

    def resize(self, image: Image.Image) -> NDArray[np.uint8]:
        """Resize an RGB PIL image so its longest side is ``image_size``: hxwx3 uint8."""
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode}")
        new_h, new_w = resized_size_hw((image.height, image.width), self.image_size)
        if (new_h, new_w) != (image.height, image.width):
            image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    def prepare(self, image: Image.Image) -> PreparedImage:
        """RGB PIL image (W x H, any size) -> ``PreparedImage`` with a 1x3xSxS float32 tensor."""
        resized = self.resize(image)
        h, w = resized.shape[:2]
        chw = resized.transpose(2, 0, 1).astype(np.float32)
        normalized = (chw - self._mean) / self._std
        tensor = np.zeros((1, 3, self.image_size, self.image_size), dtype=np.float32)
        tensor[0, :, :h, :w] = normalized
        return PreparedImage(tensor=tensor, orig_size_hw=(image.height, image.width), input_size_hw=(h, w))


def to_model_coords(
    points_xy: NDArray[np.floating], orig_size_hw: tuple[int, int], long_side: int
) -> NDArray[np.float32]:
    """Map (..., 2) (x, y) pixel coordinates of the original image into the resized frame.

    Same arithmetic as ``ResizeLongestSide.apply_coords`` (float64, then float32).
    """
    scale_x, scale_y = point_scales_xy(orig_size_hw, long_side)
    coords = np.array(points_xy, dtype=np.float64, copy=True)
    coords[..., 0] = coords[..., 0] * scale_x
    coords[..., 1] = coords[..., 1] * scale_y
    return coords.astype(np.float32)


def point_scales_xy(orig_size_hw: tuple[int, int], long_side: int) -> tuple[float, float]:
    """(new_w / old_w, new_h / old_h): how x and y in original pixels scale into the resized frame."""
    old_h, old_w = orig_size_hw
    new_h, new_w = resized_size_hw(orig_size_hw, long_side)
    return new_w / old_w, new_h / old_h
