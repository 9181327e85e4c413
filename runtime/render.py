"""Mask rendering: the decoder's low-res logits -> full-size thresholded masks, their union,
areas and boxes. The third runner beside the encoder and decoder runners of the engine.

``NumpyMaskRenderer`` runs SAM's post-processing in numpy on the host (``runtime.postprocess``:
exact, and on CPU the fastest measured); ``runtime.graph_runners.OrtMaskRenderer`` runs the
exported ``postprocess.onnx`` graph in ONNX Runtime, on the CUDA EP on a GPU, where the
logits never leave the device and one small copy of bit-packed masks comes back.
Both return the same ``RenderedMasks``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from runtime import postprocess
from runtime.masks import BitMask, BoxXYXY
from runtime.providers import ProviderName
from runtime.tensors import LogitsValue, shape_of, to_host


@dataclass(frozen=True)
class RenderedMasks:
    """M rendered masks at ``size_hw`` (output pixels).

    ``union``: OR of the kept masks. ``areas``: int64 (M,) pixels per mask. ``boxes_xyxy``:
    per mask (x0, y0, x1, y1), x1/y1 one past the last column/row, None when empty.
    ``kept``: bool (M,), area >= min_area (or no filter). ``masks``: every mask, when asked.
    """

    size_hw: tuple[int, int]
    union: BitMask
    areas: NDArray[np.int64]
    boxes_xyxy: list[BoxXYXY | None]
    kept: NDArray[np.bool_]
    masks: list[BitMask] | None


class MaskRenderer(Protocol):
    """Renders chosen (prompt, token) masks of the decoder's logits at an output size."""

    backend: str
    provider: ProviderName

    def render(self, low_res: LogitsValue, mask_indices: NDArray[np.int64], input_size_hw: tuple[int, int],
               out_size_hw: tuple[int, int], min_area: int, keep_masks: bool) -> RenderedMasks:
        """``low_res``: float32 PxTxLxL logits (host or device). ``mask_indices``: int64 (M,), each
        prompt * T + token. ``input_size_hw``: the resized image's (h, w) in the SxS frame (the crop).
        ``out_size_hw``: (H', W') output pixels. ``min_area``: masks below it are not in the union."""
        ...


def kept_by_area(areas: NDArray[np.int64], min_area: int) -> NDArray[np.bool_]:
    """The ``min_area`` rule: every mask when ``min_area`` <= 0, else those with area >= min_area."""
    if min_area <= 0:
        return np.ones(areas.shape, dtype=bool)
    return np.asarray(areas >= min_area)


class NumpyMaskRenderer:
    """SAM's two-stage bilinear upsampling in numpy, evaluated only where an edge can be."""

    backend = "numpy"
    provider: ProviderName = "cpu"

    def __init__(self, image_size: int, mask_threshold: float = 0.0) -> None:
        self.image_size = image_size
        self.mask_threshold = mask_threshold

    def render(self, low_res: LogitsValue, mask_indices: NDArray[np.int64], input_size_hw: tuple[int, int],
               out_size_hw: tuple[int, int], min_area: int, keep_masks: bool) -> RenderedMasks:
        logits = to_host(low_res)
        _, tokens, low, _ = shape_of(logits)
        plan = postprocess.plan_masks(low, self.image_size, input_size_hw, out_size_hw)
        union = postprocess.UnionAccumulator(plan)
        areas = np.zeros(len(mask_indices), dtype=np.int64)
        boxes: list[BoxXYXY | None] = []
        kept = np.zeros(len(mask_indices), dtype=bool)
        masks: list[BitMask] | None = [] if keep_masks else None
        # One mask at a time: at 64 MP a noisy mask is 64 MB in full, so 64 of them must never coexist.
        for position, index in enumerate(mask_indices):
            cell = postprocess.cell_mask(logits[int(index) // tokens, int(index) % tokens], plan, self.mask_threshold)
            areas[position] = cell.area(plan)
            boxes.append(cell.box_xyxy(plan))
            kept[position] = kept_by_area(areas[position:position + 1], min_area)[0]
            if kept[position]:
                union.add(cell)
            if masks is not None:  # packed: 1 bit a pixel, 8 MB per mask at 64 MP instead of 64 MB
                masks.append(postprocess.render(cell, plan))
        return RenderedMasks(out_size_hw, union.result(), areas, boxes, kept, masks)
