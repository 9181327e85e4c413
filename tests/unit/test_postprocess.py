"""Mask post-processing equals Sam.postprocess_masks (torch F.interpolate), on every path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime import postprocess as pp
from runtime.masks import box_xyxy
from runtime.sam_preprocessing import resized_size_hw, to_model_coords
from tests import cone_model as cone


def _smooth_logits(seed: int, noise: float = 0.0) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(1, 1, 12, 12, generator=generator)
    low = F.interpolate(base, (256, 256), mode="bicubic", align_corners=False)
    low = low + noise * torch.randn(low.shape, generator=generator)
    return low[0, 0].numpy().astype(np.float32)


def _torch_reference(low: np.ndarray, orig_hw: tuple[int, int]) -> np.ndarray:
    input_hw = resized_size_hw(orig_hw, 1024)
    x = F.interpolate(torch.from_numpy(low)[None, None], (1024, 1024), mode="bilinear", align_corners=False)
    x = x[..., : input_hw[0], : input_hw[1]]
    return F.interpolate(x, orig_hw, mode="bilinear", align_corners=False)[0, 0].numpy()


SIZES = [(1, 1), (180, 300), (300, 180), (600, 800), (1024, 1024), (1500, 700), (7, 1500), (3024, 4032)]


@pytest.mark.parametrize("orig_hw", SIZES)
@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_masks_equal_torch(orig_hw: tuple[int, int], noise: float) -> None:
    low = _smooth_logits(seed=orig_hw[0] + orig_hw[1], noise=noise)
    reference_logits = _torch_reference(low, orig_hw)
    reference = reference_logits > 0
    plan = pp.plan_masks(256, 1024, resized_size_hw(orig_hw, 1024), orig_hw)
    mask = pp.cell_mask(low, plan)
    got = pp.render(mask, plan).dense()
    # Pixels may only differ where torch's own value is within float rounding of 0.
    differing = got != reference
    assert np.all(np.abs(reference_logits[differing]) < 1e-5)
    assert mask.area(plan) == int(got.sum())
    if orig_hw[0] * orig_hw[1] <= 1_000_000:
        np.testing.assert_allclose(pp.upsample_logits(low, plan), reference_logits, atol=1e-5)


def test_noisy_masks_take_the_dense_path_and_smooth_ones_do_not() -> None:
    plan = pp.plan_masks(256, 1024, (768, 1024), (3024, 4032))
    assert pp.cell_mask(_smooth_logits(1), plan).dense is None
    white = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    assert pp.cell_mask(white, plan).dense is not None


@pytest.mark.parametrize("orig_hw", [(3024, 4032), (1500, 700), (2001, 1999), (1100, 4000)])
def test_dense_path_equals_torch_and_the_unblocked_computation(orig_hw: tuple[int, int]) -> None:
    white = np.random.default_rng(orig_hw[0]).standard_normal((256, 256)).astype(np.float32)
    plan = pp.plan_masks(256, 1024, resized_size_hw(orig_hw, 1024), orig_hw)
    mask = pp.cell_mask(white, plan)
    assert mask.dense is not None
    reference_logits = _torch_reference(white, orig_hw)
    differing = mask.dense != (reference_logits > 0)
    assert np.all(np.abs(reference_logits[differing]) < 1e-5)
    mid = pp.stage1(white, plan)
    for threshold in (0.0, 0.7):
        assert np.array_equal(pp.stage2_full_mask(mid, plan, threshold), pp.stage2_full(mid, plan) > threshold)
    assert mask.area(plan) == int(np.count_nonzero(mask.dense))  # taken block by block while computing
    assert mask.box_xyxy(plan) == box_xyxy(mask.dense)


def test_dense_stats_of_a_mask_inside_a_corner() -> None:
    plan = pp.plan_masks(256, 1024, (768, 1024), (3024, 4032))
    logits = np.full((256, 256), -5.0, np.float32)
    logits[100:140, 30:50] = np.random.default_rng(1).standard_normal((40, 20)).astype(np.float32) + 0.5
    dense, stats = pp.stage2_full_mask_with_stats(pp.stage1(logits, plan), plan, 0.0)
    assert 0 < stats.count == int(np.count_nonzero(dense)) and stats.box_xyxy() == box_xyxy(dense)
    empty, none = pp.stage2_full_mask_with_stats(pp.stage1(np.full((256, 256), -1.0, np.float32), plan), plan, 0.0)
    assert none.count == 0 and none.box_xyxy() is None and not empty.any()


def test_union_equals_or_of_masks() -> None:
    orig_hw = (900, 1300)
    plan = pp.plan_masks(256, 1024, resized_size_hw(orig_hw, 1024), orig_hw)
    masks = [pp.cell_mask(_smooth_logits(s, noise), plan) for s, noise in [(1, 0.0), (2, 0.0), (3, 0.5)]]
    expected = np.zeros(orig_hw, bool)
    for m in masks:
        expected |= pp.render(m, plan).dense()
    np.testing.assert_array_equal(pp.render_union(masks, plan).dense(), expected)
    assert not pp.render_union([], plan).any()


def test_bad_geometry_is_refused() -> None:
    with pytest.raises(ValueError):
        pp.plan_axis(256, 1024, 0, 10)
    with pytest.raises(ValueError):
        pp.plan_axis(256, 1024, 1025, 10)


@pytest.mark.parametrize("orig_hw", [(600, 800), (3024, 4032), (1500, 700), (7, 1500)])
@pytest.mark.parametrize("click_xy", [(0.4, 0.55), (0.0, 0.0), (1.0, 1.0), (1.0, 0.3)])
def test_hold_shaped_masks_equal_sam_postprocess_masks(orig_hw: tuple[int, int], click_xy: tuple[float, float]) -> None:
    """A disk of logits (a hold: few edge cells, the compact path) renders, counts and boxes as SAM's
    own ``postprocess_masks`` (PyTorch) thresholds it; clicks at the corners and edges give cut disks."""
    click = (click_xy[0] * orig_hw[1], click_xy[1] * orig_hw[0])
    low = cone.cone_logits(to_model_coords(np.array([[click]]), orig_hw, 1024))[0, 0]
    plan = pp.plan_masks(256, 1024, resized_size_hw(orig_hw, 1024), orig_hw)
    mask = pp.cell_mask(low, plan)
    assert mask.dense is None  # the compact path
    reference = cone.torch_postprocess(low[None, None], resized_size_hw(orig_hw, 1024), orig_hw)[0, 0]
    cone.assert_masks_match(pp.render(mask, plan).dense(), reference)
    cone.assert_box_and_area_match(mask.box_xyxy(plan), mask.area(plan), reference)
    assert mask.box_xyxy(plan) == box_xyxy(pp.render(mask, plan).dense()) and mask.area(plan) == pp.render(mask, plan).area()
