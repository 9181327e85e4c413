"""One reusable host buffer that device results are copied into (page-locked on a GPU).

A device-to-host copy into pageable memory goes through CUDA's own staging and runs at a
fraction of the bus speed; into page-locked (pinned) memory it is one DMA. Allocating pinned
memory is slow (it maps and locks pages), so ``StagingBuffer`` keeps one buffer and reuses it:
it grows to the largest copy asked for, up to ``keep_bytes``; a copy larger than that gets a
buffer of its own, freed as soon as the copy has been read, so the kept memory stays bounded.

``PinnedAllocator`` allocates with ``cudaHostAlloc`` (``runtime.cuda_runtime``);
``PageableAllocator`` with numpy, for the CPU EP (the same code path, no GPU).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from runtime.cuda_runtime import CudaRuntime


class HostAllocator(Protocol):
    """Host memory by address: ``allocate`` gives ``nbytes`` at an address, ``free`` takes it back."""

    kind: str

    def allocate(self, nbytes: int) -> int: ...

    def free(self, address: int) -> None: ...


class PinnedAllocator:
    """Page-locked host memory of one CUDA device (``cudaHostAlloc`` / ``cudaFreeHost``)."""

    kind = "pinned"

    def __init__(self, cuda: CudaRuntime) -> None:
        self._cuda = cuda

    def allocate(self, nbytes: int) -> int:
        return self._cuda.host_alloc(nbytes)

    def free(self, address: int) -> None:
        self._cuda.free_host(address)


class PageableAllocator:
    """Ordinary (pageable) host memory from numpy, kept alive until freed."""

    kind = "pageable"

    def __init__(self) -> None:
        self._arrays: dict[int, NDArray[np.uint8]] = {}

    def allocate(self, nbytes: int) -> int:
        array = np.empty(nbytes, dtype=np.uint8)
        self._arrays[array.ctypes.data] = array
        return int(array.ctypes.data)

    def free(self, address: int) -> None:
        del self._arrays[address]


def host_view(address: int, nbytes: int) -> NDArray[np.uint8]:
    """A uint8 (nbytes,) numpy view of host memory at ``address`` (no copy; valid while it is allocated)."""
    return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address))


class StagingBuffer:
    """A host buffer reused between copies; see the module docstring. Thread-safe: one copy at a
    time uses the kept buffer, larger ones each get their own.

    ``allocations``: buffers allocated so far; ``capacity_bytes``: the kept buffer's size (0: none).
    """

    def __init__(self, allocator: HostAllocator, keep_bytes: int) -> None:
        if keep_bytes <= 0:
            raise ValueError(f"keep_bytes must be positive, got {keep_bytes}")
        self.allocator = allocator
        self.keep_bytes = keep_bytes
        self.capacity_bytes = 0
        self.allocations = 0
        self._address = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def held(self, nbytes: int) -> Iterator[int]:
        """The address of at least ``nbytes`` of host memory, this caller's until the block ends."""
        if nbytes <= 0:
            raise ValueError(f"nbytes must be positive, got {nbytes}")
        if nbytes > self.keep_bytes:
            address = self._allocate(nbytes)
            try:
                yield address
            finally:
                self.allocator.free(address)
            return
        with self._lock:
            if nbytes > self.capacity_bytes:
                self._release()
                self._address = self._allocate(nbytes)
                self.capacity_bytes = nbytes
            yield self._address

    def _allocate(self, nbytes: int) -> int:
        address = self.allocator.allocate(nbytes)
        self.allocations += 1
        return address

    def _release(self) -> None:
        if self.capacity_bytes:
            self.allocator.free(self._address)
        self._address, self.capacity_bytes = 0, 0

    def close(self) -> None:
        """Free the kept buffer (a later copy allocates again)."""
        with self._lock:
            self._release()
