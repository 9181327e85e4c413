"""Hold-shaped masks with a known answer through both mask renderers (numpy, and the graph on the CPU EP).

The cone decoder (``tests.cone_model``) gives each click a disk; SAM's own ``postprocess_masks``
of the same logits is the exact answer and the analytic disk a check that it is a disk.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from export.prepost_graphs import build_postprocess
from runtime import postprocess
from runtime.graph_runners import OrtMaskRenderer
from runtime.holds import Click, build_prompts, output_size_hw
from runtime.render import MaskRenderer, NumpyMaskRenderer, RenderedMasks
from runtime.sam_preprocessing import resized_size_hw, to_model_coords
from tests import cone_model as cone

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def cone_session() -> ort.InferenceSession:
    return ort.InferenceSession(cone.build_cone_decoder().SerializeToString(), providers=CPU)


@pytest.fixture(scope="module", params=["numpy", "graph"])
def renderer(request: pytest.FixtureRequest) -> MaskRenderer:
    if request.param == "numpy":
        return NumpyMaskRenderer(cone.IMAGE_SIZE, 0.0)
    graph = build_postprocess(cone.IMAGE_SIZE, cone.LOW_RES, 4, 0.0)
    return OrtMaskRenderer(ort.InferenceSession(graph.SerializeToString(), providers=CPU), "cpu")


def decode(session: ort.InferenceSession, clicks: tuple[Click, ...], orig_size_hw: tuple[int, int]
           ) -> NDArray[np.float32]:
    """The cone decoder's Bx4xLxL logits for the prompts ``build_prompts`` makes of ``clicks``."""
    coords, labels, _ = build_prompts(clicks, None, "per_click")
    feeds = {"image_embeddings": np.zeros((1, 256, 64, 64), np.float32),
             "point_coords": to_model_coords(coords, orig_size_hw, cone.IMAGE_SIZE), "point_labels": labels,
             "mask_input": np.zeros((len(coords), 1, 256, 256), np.float32),
             "has_mask_input": np.zeros(len(coords), np.float32)}
    return np.asarray(session.run(["low_res_masks"], feeds)[0])


def render_clicks(session: ort.InferenceSession, renderer: MaskRenderer, clicks: tuple[Click, ...],
                  orig_size_hw: tuple[int, int], out_size_hw: tuple[int, int], min_area: int = 0) -> RenderedMasks:
    logits = decode(session, clicks, orig_size_hw)
    indices = np.arange(len(logits), dtype=np.int64) * 4  # token 0 of every prompt
    return renderer.render(logits, indices, resized_size_hw(orig_size_hw, cone.IMAGE_SIZE), out_size_hw,
                           min_area, keep_masks=True)


def check_against_sam(rendered: RenderedMasks, clicks: tuple[Click, ...], orig_size_hw: tuple[int, int],
                      out_size_hw: tuple[int, int], kept: list[bool]) -> None:
    """Every mask, area, box and the union equal SAM's postprocess_masks of the same logits."""
    logits = cone.reference_logits([(c.x, c.y) for c in clicks], orig_size_hw, out_size_hw)
    assert rendered.masks is not None and rendered.size_hw == out_size_hw
    for k in range(len(clicks)):
        cone.assert_masks_match(rendered.masks[k].dense(), logits[k])
        cone.assert_box_and_area_match(rendered.boxes_xyxy[k], int(rendered.areas[k]), logits[k])
    assert rendered.kept.tolist() == kept
    union_logits = np.max(logits[np.asarray(kept)], axis=0) if any(kept) else np.full(out_size_hw, -1.0, np.float32)
    cone.assert_masks_match(rendered.union.dense(), union_logits)


EDGE_CLICKS = (Click(0.0, 0.0), Click(800.0, 300.0), Click(400.0, 600.0), Click(0.0, 600.0), Click(800.0, 0.0))


@pytest.mark.parametrize("orig_size_hw", [(600, 800), (1500, 2000), (2000, 1500), (3024, 4032)])
def test_masks_are_sam_disks_around_each_click(cone_session: ort.InferenceSession, renderer: MaskRenderer,
                                               orig_size_hw: tuple[int, int]) -> None:
    if renderer.backend != "numpy" and orig_size_hw[0] * orig_size_hw[1] > 4_000_000:
        pytest.skip("12 MP per-click masks through the graph on the CPU EP: covered at 3 MP")
    height, width = orig_size_hw
    clicks = (Click(width * 0.3, height * 0.4), Click(width * 0.35, height * 0.42), Click(width * 0.8, height * 0.7))
    rendered = render_clicks(cone_session, renderer, clicks, orig_size_hw, orig_size_hw)
    check_against_sam(rendered, clicks, orig_size_hw, orig_size_hw, [True] * 3)
    radius = cone.TOKEN_RADII_1024[0] * max(orig_size_hw) / cone.IMAGE_SIZE
    for k, click in enumerate(clicks):  # the analytic disk, up to a pixel at its edge
        box = rendered.boxes_xyxy[k]
        assert box is not None
        x0, y0, x1, y1 = box
        for got, want in ((x0, click.x - radius), (y0, click.y - radius), (x1, click.x + radius), (y1, click.y + radius)):
            assert abs(got - want) <= 1.0
        assert abs(int(rendered.areas[k]) - np.pi * radius**2) <= 2 * np.pi * radius
    disks = cone.analytic_disks([(c.x, c.y) for c in clicks], orig_size_hw, orig_size_hw)
    differing = rendered.union.dense() != (disks.max(axis=0) > 0)
    assert np.all(np.abs(disks.max(axis=0)[differing]) < 1.0)


def test_clicks_at_the_edges_give_cut_disks_and_min_area_drops_the_small_ones(
        cone_session: ort.InferenceSession, renderer: MaskRenderer) -> None:
    orig = (600, 800)
    rendered = render_clicks(cone_session, renderer, EDGE_CLICKS, orig, orig)
    radius = cone.TOKEN_RADII_1024[0] * 800 / cone.IMAGE_SIZE  # 31.25 px
    full = np.pi * radius**2
    # Corners hold a quarter disk, edge midpoints a half: min_area between the two keeps the halves.
    # Pixel (r, c) is inside when its centre (c + 0.5, r + 0.5) is within 31.25 px of the click.
    assert rendered.boxes_xyxy == [(0, 0, 31, 31), (769, 269, 800, 331), (369, 569, 431, 600), (0, 569, 31, 600),
                                   (769, 0, 800, 31)]
    assert all(abs(int(rendered.areas[k]) - full / 4) < radius for k in (0, 3, 4))
    assert all(abs(int(rendered.areas[k]) - full / 2) < radius for k in (1, 2))
    check_against_sam(rendered, EDGE_CLICKS, orig, orig, [True] * 5)
    min_area = int(full / 3)
    filtered = render_clicks(cone_session, renderer, EDGE_CLICKS, orig, orig, min_area=min_area)
    check_against_sam(filtered, EDGE_CLICKS, orig, orig, [False, True, True, False, False])
    assert filtered.areas.tolist() == rendered.areas.tolist()


@pytest.mark.parametrize("max_side", [512, 333])
def test_max_side_scales_the_disks(cone_session: ort.InferenceSession, renderer: MaskRenderer, max_side: int) -> None:
    orig = (1500, 2000)
    out = output_size_hw(orig, max_side)
    clicks = (Click(600.0, 700.0), Click(2000.0, 1500.0), Click(1000.0, 0.0))
    rendered = render_clicks(cone_session, renderer, clicks, orig, out)
    check_against_sam(rendered, clicks, orig, out, [True] * 3)
    radius = cone.TOKEN_RADII_1024[0] * max_side / cone.IMAGE_SIZE
    assert abs(int(rendered.areas[0]) - np.pi * radius**2) <= 2 * np.pi * radius


def test_hold_shaped_masks_take_the_compact_path() -> None:
    """The cone's masks are what real holds look like to the renderer: few edge cells, no dense stage 2."""
    orig = (3024, 4032)
    coords = to_model_coords(np.array([[[1000.0, 2000.0]]]), orig, cone.IMAGE_SIZE)
    plan = postprocess.plan_masks(cone.LOW_RES, cone.IMAGE_SIZE, resized_size_hw(orig, cone.IMAGE_SIZE), orig)
    assert postprocess.cell_mask(cone.cone_logits(coords)[0, 0], plan).dense is None


def test_min_area_keeps_a_mask_of_exactly_that_area(cone_session: ort.InferenceSession, renderer: MaskRenderer) -> None:
    orig = (600, 800)
    clicks = (Click(400.0, 300.0), Click(0.0, 0.0))  # a whole disk and a quarter disk
    areas = render_clicks(cone_session, renderer, clicks, orig, orig).areas
    at_whole = render_clicks(cone_session, renderer, clicks, orig, orig, min_area=int(areas[0]))
    assert at_whole.kept.tolist() == [True, False]
    check_against_sam(at_whole, clicks, orig, orig, [True, False])
    assert render_clicks(cone_session, renderer, clicks, orig, orig, min_area=int(areas[0]) + 1).kept.tolist() == [False] * 2
