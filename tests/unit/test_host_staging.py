"""The reused host buffer that device results are copied into (``runtime.host_staging``): one
buffer kept and reused, grown to the largest copy, never kept beyond its bound."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.host_staging import PageableAllocator, StagingBuffer, host_view


class CountingAllocator(PageableAllocator):
    """Pageable memory that records what is allocated and still live (bytes by address)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}

    def allocate(self, nbytes: int) -> int:
        address = super().allocate(nbytes)
        self.live[address] = nbytes
        return address

    def free(self, address: int) -> None:
        super().free(address)
        del self.live[address]


def test_the_buffer_is_reused_and_grows_to_the_largest_copy() -> None:
    allocator = CountingAllocator()
    staging = StagingBuffer(allocator, keep_bytes=1000)
    with staging.held(300) as first:
        host_view(first, 300)[:] = 7
    with staging.held(200) as second:
        assert second == first and host_view(second, 200).tolist() == [7] * 200  # the same memory again
    assert staging.allocations == 1 and allocator.live == {first: 300}
    with staging.held(800):
        pass
    assert staging.allocations == 2 and list(allocator.live.values()) == [800]  # the old one freed
    assert staging.capacity_bytes == 800


def test_a_copy_beyond_the_bound_gets_its_own_buffer_freed_after() -> None:
    allocator = CountingAllocator()
    staging = StagingBuffer(allocator, keep_bytes=1000)
    with staging.held(500):
        pass
    with staging.held(5000) as large:
        assert allocator.live[large] == 5000
        host_view(large, 5000)[-1] = 1  # all of it is writable
    assert list(allocator.live.values()) == [500] and staging.capacity_bytes == 500
    staging.close()
    assert allocator.live == {} and staging.capacity_bytes == 0


def test_kept_memory_never_exceeds_the_bound() -> None:
    allocator = CountingAllocator()
    staging = StagingBuffer(allocator, keep_bytes=4096)
    for nbytes in np.random.default_rng(0).integers(1, 20_000, 50):
        with staging.held(int(nbytes)):
            pass
        assert sum(allocator.live.values()) <= 4096


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep_bytes"):
        StagingBuffer(PageableAllocator(), 0)
    with pytest.raises(ValueError, match="nbytes"), StagingBuffer(PageableAllocator(), 10).held(0):
        pass


def test_no_pinned_memory_leaves_the_cut_out_to_the_host() -> None:
    """The real libcudart on a machine without a usable GPU: cudaHostAlloc's failure is a CudaError,
    the buffer keeps nothing, and the cut-out resizer answers None (the host resizes) instead of a 500."""
    import onnxruntime as ort
    from PIL import Image

    from export.prepost_graphs import build_cutout_resize
    from runtime.cuda_runtime import CudaError, CudaRuntime
    from runtime.cutout_resize import OrtCutoutResizer
    from runtime.host_staging import PinnedAllocator
    from runtime.preprocessors import LoadedImage

    cuda = CudaRuntime.load(0)
    if cuda is None:
        pytest.skip("no libcudart on this machine")
    try:
        cuda.free_host(cuda.host_alloc(4096))
        pytest.skip("this machine has a GPU: pinned memory can be allocated")
    except CudaError as exc:
        assert "cuda" in str(exc).lower()
    staging = StagingBuffer(PinnedAllocator(cuda), keep_bytes=1 << 20)
    session = ort.InferenceSession(build_cutout_resize().SerializeToString(), providers=["CPUExecutionProvider"])
    resizer = OrtCutoutResizer(session, "cuda", staging)
    photo = LoadedImage((30, 40), device=object(), _to_host=lambda _: np.zeros((30, 40, 3), np.uint8))
    assert resizer.resize(photo, (15, 20)) is None
    assert staging.capacity_bytes == 0 and staging.allocations == 0 and photo.host is None
    assert resizer.resize(LoadedImage.from_pil(Image.new("RGB", (40, 30))), (15, 20)) is None  # host photo: host
