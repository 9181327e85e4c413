"""COCO RLE (checked against pycocotools' own encoder and decoder), BitMask and bounding boxes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as coco_mask

from runtime.masks import BitMask, box_xyxy
from runtime.outputs import write_mask
from runtime.rle import column_major_runs, to_rle


def _reference(mask: np.ndarray) -> dict[str, object]:
    encoded = coco_mask.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' decode/area vs numpy 2's __array__ copy rule
@settings(max_examples=150, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_rle_equals_pycocotools_and_decodes_back(mask: np.ndarray) -> None:
    rle = to_rle(mask)
    assert rle == _reference(mask)
    decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    assert int(coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()})) == int(mask.sum())


@pytest.mark.parametrize("size_hw", [(1, 1), (1, 7), (9, 1), (480, 640)])
@pytest.mark.parametrize("fill", ["empty", "full", "corner", "stripes"])
def test_rle_edge_cases(size_hw: tuple[int, int], fill: str) -> None:
    mask = np.zeros(size_hw, bool)
    if fill == "full":
        mask[:] = True
    elif fill == "corner":
        mask[0, 0] = mask[-1, -1] = True
    elif fill == "stripes":
        mask[:, ::2] = True
    assert to_rle(mask) == _reference(mask)
    runs = column_major_runs(mask)
    assert int(runs.sum()) == mask.size and int(runs[1::2].sum()) == int(mask.sum())


def test_rle_is_column_major_and_json_ready() -> None:
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = mask[1, 1] = True  # column 1, rows 0-1: column-major positions 3 and 4
    assert column_major_runs(mask).tolist() == [3, 2, 7]
    rle = to_rle(mask)
    assert rle["size"] == [3, 4] and isinstance(rle["counts"], str)


@settings(max_examples=80, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 20), st.integers(1, 40))))
def test_bitmask_round_trips_and_measures(mask: np.ndarray) -> None:
    dense = BitMask.from_dense(mask)
    packed = BitMask(mask.shape, packed=np.packbits(mask, axis=1))
    np.testing.assert_array_equal(packed.dense(), mask)
    np.testing.assert_array_equal(dense.packed(), np.packbits(mask, axis=1))
    assert dense.area() == packed.area() == int(mask.sum())
    assert dense.any() == packed.any() == bool(mask.any())
    other = np.roll(mask, 1, axis=1)
    np.testing.assert_array_equal((packed | BitMask.from_dense(other)).dense(), mask | other)
    png = np.asarray(Image.open(io.BytesIO(write_mask(packed, "png1"))).convert("L")) > 0
    np.testing.assert_array_equal(png, mask)


def test_bitmask_refuses_mismatched_forms() -> None:
    with pytest.raises(ValueError, match="packed mask shape"):
        BitMask((4, 9), packed=np.zeros((4, 1), np.uint8))
    with pytest.raises(ValueError, match="dense or its packed"):
        BitMask((4, 9))


def test_box_is_first_and_one_past_last_pixel() -> None:
    mask = np.zeros((10, 20), bool)
    assert box_xyxy(mask) is None
    mask[2:5, 7] = True
    mask[4, 3] = True
    assert box_xyxy(mask) == (3, 2, 8, 5)
