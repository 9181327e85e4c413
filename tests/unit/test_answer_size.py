"""The answer's size bound (issue 24): the least-size estimate is a true lower bound, and the max_side fits."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from PIL import Image

from runtime.errors import AnswerTooLarge
from runtime.holds import output_size_hw
from runtime.masks import BitMask
from runtime.outputs import OutputOptions, cutout_rgba, write_mask, write_result
from serving.answer_size import check_answer_estimate, check_answer_size, least_answer_bytes
from serving.responses import JSON, PNG, ZIP, SerialisedImages


def _encoded_files_bytes(size_hw: tuple[int, int], outputs: OutputOptions) -> int:
    """What the cut-out and mask files really take, encoded by the serving code (noise: worst case)."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (*size_hw, 3), dtype=np.uint8))
    mask = rng.random(size_hw) > 0.5
    cutout = write_result(cutout_rgba(rgb, mask), outputs)
    return len(cutout) + len(write_mask(BitMask.from_dense(mask), outputs.mask_format, outputs.png_level))


@pytest.mark.parametrize("size_hw", [(48, 64), (301, 199)])
def test_the_uncompressed_estimate_is_a_close_lower_bound(size_hw: tuple[int, int]) -> None:
    outputs = OutputOptions(png_level=0)
    real = _encoded_files_bytes(size_hw, outputs)
    least = least_answer_bytes(size_hw, outputs, ZIP, 0)
    assert least <= real < least * 1.01 + 200  # stored deflate: the raw rows plus headers
    assert least_answer_bytes(size_hw, outputs, JSON, 0) == int(least * 4 / 3)
    assert least_answer_bytes(size_hw, OutputOptions(png_level=1), ZIP, 0) == 0  # compressed: may shrink to nothing


def test_an_estimate_over_the_limit_is_refused_with_a_max_side_that_fits() -> None:
    size_hw = (6000, 8000)  # a flat 48 MP photo: small upload, 250 MB of uncompressed PNG answer
    outputs = OutputOptions(png_level=0)
    limit = 6 << 20
    with pytest.raises(AnswerTooLarge, match="max_side to") as raised:
        check_answer_estimate(size_hw, outputs, JSON, 0, limit)
    found = re.search(r"max_side to (\d+)", raised.value.message)
    assert found is not None
    side = int(found.group(1))
    assert least_answer_bytes(output_size_hw(size_hw, side), outputs, JSON, 0) <= limit
    assert least_answer_bytes(output_size_hw(size_hw, side + 1), outputs, JSON, 0) > limit
    check_answer_estimate(size_hw, outputs, PNG, 0, 64 << 20)  # the 8-bit mask alone: 48 MB fits 64 MiB


def test_an_encoded_answer_over_the_limit_is_refused() -> None:
    check_answer_size(6 << 20, (3000, 4000), 6 << 20)
    with pytest.raises(AnswerTooLarge, match=r"max_side to (\d+)") as raised:
        check_answer_size(12 << 20, (3000, 4000), 6 << 20)
    side = int(re.findall(r"max_side to (\d+)", raised.value.message)[0])
    height, width = output_size_hw((3000, 4000), side)
    assert height * width <= 3000 * 4000 / 2 * 0.7 < (height + 2) * (width + 2)


def test_the_files_are_counted_as_the_answer_carries_them() -> None:
    images = SerialisedImages(b"r" * 10, b"m" * 5, [b"p" * 3, b"q" * 3])
    assert images.framed_bytes(ZIP) == 21
    assert images.framed_bytes(JSON) == len(base64.b64encode(b"x" * 21))
    assert SerialisedImages(None, b"m" * 7, None).framed_bytes(PNG) == 7
