"""The old service's algorithm in PyTorch: the reference for parity tests and the benchmark's baseline.

The service this project replaces ran ``SamPredictor.set_image`` once per request, then one
``predict(point_coords=[[x, y]], point_labels=[1], multimask_output=False)`` per click, and
OR-ed the masks. Clicks are (x, y) pixels of the upright image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from segment_anything import SamPredictor


def old_service_predict(predictor: SamPredictor, clicks_xy: Sequence[tuple[float, float]]
                        ) -> tuple[NDArray[np.bool_], list[NDArray[np.bool_]]]:
    """One predict per click on the predictor's current image, OR-ed: (union H x W, per-click masks)."""
    height, width = predictor.original_size
    union = np.zeros((height, width), dtype=bool)
    per_click = []
    with torch.no_grad():
        for x, y in clicks_xy:
            masks, _, _ = predictor.predict(point_coords=np.array([[x, y]], np.float32), point_labels=np.array([1]),
                                            multimask_output=False)
            per_click.append(masks[0])
            union |= masks[0]
    return union, per_click
