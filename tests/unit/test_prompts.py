"""Prompt building and the point and bounds checks of ``runtime.holds``, without a model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.errors import InvalidPoints
from runtime.holds import Click, build_prompts, check_bounds, check_clicks, output_size_hw

NAN, INF = math.nan, math.inf


def test_each_hold_click_is_a_prompt_with_every_negative_and_sams_padding_point() -> None:
    clicks = (Click(10, 20), Click(30, 40, 0), Click(50, 60), Click(70, 80, 0))
    coords, labels, groups = build_prompts(clicks, None, "per_click")
    assert groups == [(0, 1, 3), (2, 1, 3)]
    np.testing.assert_array_equal(coords, [[[10, 20], [30, 40], [70, 80], [0, 0]], [[50, 60], [30, 40], [70, 80], [0, 0]]])
    np.testing.assert_array_equal(labels, [[1, 0, 0, -1], [1, 0, 0, -1]])
    assert coords.dtype == labels.dtype == np.float32


def test_a_box_replaces_the_padding_point_and_joins_every_prompt() -> None:
    coords, labels, groups = build_prompts((Click(5, 6), Click(7, 8)), (1, 2, 30, 40), "per_click")
    assert groups == [(0,), (1,)]
    np.testing.assert_array_equal(coords[1], [[7, 8], [1, 2], [30, 40]])
    np.testing.assert_array_equal(labels, [[1, 2, 3], [1, 2, 3]])
    box_only = build_prompts((), (1, 2, 30, 40), "per_click")
    assert box_only[2] == [()] and box_only[1].tolist() == [[2.0, 3.0]]


def test_single_mode_sends_every_point_as_one_prompt() -> None:
    coords, labels, groups = build_prompts((Click(1, 2), Click(3, 4, 0), Click(5, 6)), None, "single")
    assert groups == [(0, 1, 2)]
    np.testing.assert_array_equal(labels, [[1, 0, 1, -1]])
    assert coords.shape == (1, 4, 2)


@pytest.mark.parametrize(("clicks", "box", "match"), [
    ((Click(NAN, 1),), None, "point 0 has a non-finite"),
    ((Click(1, 1), Click(1, INF)), None, "point 1 has a non-finite"),
    ((Click(1, 1, 2),), None, "point 0 has label 2"),
    ((Click(1, 1, -1),), None, "label -1"),
    ((Click(1, 1, 0),), None, "at least one hold point"),
    ((), None, "at least one hold point"),
    ((Click(1, 1),), (0, 0, NAN, 5), "box .* non-finite"),
    (tuple(Click(1, 1) for _ in range(5)), None, "5 points is more than the limit of 4"),
])
def test_bad_clicks_are_refused_naming_the_problem(clicks: tuple[Click, ...], box: tuple[float, float, float, float] | None,
                                                   match: str) -> None:
    with pytest.raises(InvalidPoints, match=match):
        check_clicks(clicks, box, max_clicks=4)


def test_good_clicks_pass() -> None:
    check_clicks(tuple(Click(1, 1) for _ in range(4)), None, max_clicks=4)
    check_clicks((Click(1, 1, 0),), (0, 0, 5, 5), max_clicks=4)  # a box with only negatives


@pytest.mark.parametrize("click", [Click(0, 0), Click(800, 600), Click(800, 0), Click(0, 600), Click(399.5, 299.5)])
def test_points_on_the_image_edges_are_inside(click: Click) -> None:
    check_bounds((click,), (0, 0, 800, 600), (600, 800))


@pytest.mark.parametrize(("click", "box", "match"), [
    (Click(-0.01, 5), None, r"point 0 \(-0.01, 5\) is outside the 800x600 image"),
    (Click(800.01, 5), None, "outside the 800x600"),
    (Click(5, 600.5), None, "outside"),
    (Click(5, -1), None, "outside"),
    (Click(5, 5), (10, 10, 10, 20), "0 <= x0 < x1 <= 800"),  # empty box
    (Click(5, 5), (10, 10, 20, 601), "0 <= y0 < y1 <= 600"),
    (Click(5, 5), (-1, 10, 20, 30), "box"),
])
def test_points_and_boxes_outside_the_upright_image_are_refused(click: Click, box: tuple[float, float, float, float] | None,
                                                                match: str) -> None:
    with pytest.raises(InvalidPoints, match=match):
        check_bounds((click,), box, (600, 800))


@pytest.mark.parametrize(("orig", "max_side", "out"), [
    ((600, 800), None, (600, 800)),
    ((600, 800), 800, (600, 800)),
    ((600, 800), 2048, (600, 800)),  # never scaled up
    ((600, 800), 400, (300, 400)),
    ((3024, 4032), 1000, (750, 1000)),
    ((4032, 3024), 333, (333, 250)),
    ((1, 2000), 100, (1, 100)),  # at least one pixel
])
def test_output_size_scales_the_long_side_down_to_max_side(orig: tuple[int, int], max_side: int | None,
                                                           out: tuple[int, int]) -> None:
    assert output_size_hw(orig, max_side) == out
