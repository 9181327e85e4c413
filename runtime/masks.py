"""Measures of boolean masks shared by the runtime, export parity, tests and benchmarks."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def mask_iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Intersection over union of two boolean masks of the same (H, W); 1.0 when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union
