"""Boolean masks: measures (IoU, area, bounding box) and ``BitMask``, a mask held dense or bit-packed.

Shared by the runtime, export parity, tests and benchmarks. Packed rows are those of
``np.packbits(mask, axis=1)`` and of a 1-bit PNG: uint8 (H, ceil(W/8)), most significant bit
first, each row padded with zero bits.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: A mask's bounding box in output pixels: (x0, y0, x1, y1), x1/y1 one past the last column/row.
BoxXYXY = tuple[int, int, int, int]


def mask_iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Intersection over union of two boolean masks of the same (H, W); 1.0 when both are empty."""
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def box_xyxy(mask: NDArray[np.bool_]) -> BoxXYXY | None:
    """Bounding box of a bool (H, W) mask: (first column, first row, last column + 1, last row + 1).

    In the pixel frame of the clicks (pixel i spans [i, i + 1)), so width is x1 - x0. None
    when the mask is empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def packed_width(width: int) -> int:
    """Bytes per packed row of a ``width``-pixel mask."""
    return (width + 7) // 8


class BitMask:
    """A bool (H, W) mask stored dense, bit-packed, or both; each form is made once, on demand.

    The GPU path produces packed masks (one small device-to-host copy); the CPU path dense
    ones. A 1-bit PNG is written from the packed rows, a cut-out's alpha from the dense mask.
    """

    __slots__ = ("_dense", "_packed", "size_hw")

    def __init__(self, size_hw: tuple[int, int], dense: NDArray[np.bool_] | None = None,
                 packed: NDArray[np.uint8] | None = None) -> None:
        if dense is None and packed is None:
            raise ValueError("a BitMask needs its dense or its packed form")
        height, width = size_hw
        if dense is not None and dense.shape != (height, width):
            raise ValueError(f"dense mask shape {dense.shape} is not {size_hw}")
        if packed is not None and packed.shape != (height, packed_width(width)):
            raise ValueError(f"packed mask shape {packed.shape} is not ({height}, {packed_width(width)})")
        self.size_hw = (int(height), int(width))
        self._dense = None if dense is None else np.asarray(dense, dtype=bool)
        self._packed = None if packed is None else np.ascontiguousarray(packed, dtype=np.uint8)

    @classmethod
    def from_dense(cls, dense: NDArray[np.bool_]) -> BitMask:
        return cls((int(dense.shape[0]), int(dense.shape[1])), dense=dense)

    @classmethod
    def empty(cls, size_hw: tuple[int, int]) -> BitMask:
        return cls(size_hw, packed=np.zeros((size_hw[0], packed_width(size_hw[1])), np.uint8))

    def dense(self, keep: bool = True) -> NDArray[np.bool_]:
        """bool (H, W). ``keep=False``: unpack without keeping the result (8x the packed size) in the mask."""
        if self._dense is not None:
            return self._dense
        assert self._packed is not None
        unpacked = np.unpackbits(self._packed, axis=1, count=self.size_hw[1]).view(bool)
        if keep:
            self._dense = unpacked
        return unpacked

    def packed(self) -> NDArray[np.uint8]:
        """uint8 (H, ceil(W/8)), rows packed most significant bit first."""
        if self._packed is None:
            assert self._dense is not None
            self._packed = np.packbits(self._dense, axis=1)
        return self._packed

    def area(self) -> int:
        """Number of pixels in the mask."""
        if self._dense is not None:
            return int(np.count_nonzero(self._dense))
        return int(np.bitwise_count(self.packed()).sum())

    def any(self) -> bool:
        return bool(self._dense.any()) if self._dense is not None else bool(self.packed().any())

    def __or__(self, other: BitMask) -> BitMask:
        if other.size_hw != self.size_hw:
            raise ValueError(f"mask sizes differ: {self.size_hw} vs {other.size_hw}")
        if self._dense is not None and other._dense is not None:
            return BitMask(self.size_hw, dense=self._dense | other._dense)
        return BitMask(self.size_hw, packed=self.packed() | other.packed())
