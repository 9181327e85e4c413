"""GPU memory: one budget for the sessions, the embedding cache and the mask renders, and what an
out-of-memory becomes.

On a GPU the embeddings (4 MiB each, fp32 1x256x64x64) stay in device memory, each session
keeps its own CUDA arena, and a mask render holds about ``RENDER_BYTES_PER_PIXEL`` bytes per
output pixel of its run (float logits, bool, int32 at once). The plan splits a device budget
(a fraction of the device's memory, or a set number of bytes) into:

- ``reserved_bytes``: the model sessions (weights, the encoder's activations, cuDNN/cuBLAS
  workspaces), estimated from the model files' sizes;
- ``render_slots`` renders of at most ``render_run_pixels`` pixels each, at once (more wait
  for a slot, up to ``render_wait_s``, then 503 ``overloaded``);
- ``cache_bytes``: the embedding cache's share, at most what the host-side budget allows.

An allocation failure (the CUDA arena's limit, ``cudaMalloc``, cuBLAS) raises
``DeviceMemoryExhausted``, a 503 ``overloaded``: the caller frees cache entries so that the next
request can run (``runtime.holds.HoldExtractor``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from runtime.cuda_runtime import CudaError, CudaRuntime
from runtime.env_values import env_field, parse_bool, parse_bytes, parse_fraction, positive, positive_float
from runtime.errors import DeviceMemoryExhausted

log = logging.getLogger(__name__)

#: Bytes per output pixel that one post-processing run holds at once on the device (float logits,
#: bool, int32 intermediates; 9-12 measured on the CPU EP, rounded up).
RENDER_BYTES_PER_PIXEL = 13
#: Full-size pixels (prompts x H' x W') per post-processing run: ten masks of a 12 MP photo,
#: about 1.7 GB on the device.
DEFAULT_RENDER_RUN_PIXELS = 128_000_000
#: Sessions' memory beyond their weights: CUDA context, cuDNN/cuBLAS workspaces, the encoder's
#: activations at 1024x1024 (an estimate: the GPU script measures the real peak).
SESSION_OVERHEAD_BYTES = 1 << 30
#: Weights held per byte of model file: the weights themselves plus the encoder's activations and
#: the optimizer's pre-packed copies (an estimate, as above).
SESSION_BYTES_PER_MODEL_BYTE = 3

#: What ONNX Runtime, CUDA and cuBLAS say when an allocation fails.
OUT_OF_MEMORY_PATTERNS = re.compile(
    r"out of memory|Failed to allocate memory|Available memory of \d+ is smaller than requested bytes"
    r"|cudaErrorMemoryAllocation|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|BFCArena::AllocateRawInternal",
    re.IGNORECASE)


@dataclass(frozen=True)
class DeviceMemorySettings:
    """``SAM_GPU_MEMORY_FRACTION`` / ``SAM_GPU_MEMORY_BYTES``: the budget; ``SAM_GPU_RENDER_SLOTS``:
    renders at once at most; ``SAM_GPU_RENDER_WAIT_S``: how long a render waits for a slot;
    ``SAM_GPU_ARENA_CAPS``: cap the sessions' CUDA arenas at their planned shares (``arena_limits``)."""

    fraction: float = env_field(
        0.85, "SAM_GPU_MEMORY_FRACTION", parse_fraction,
        doc="the device memory budget, a fraction of the GPU's memory: the model sessions (estimated from the graph "
            "files), `SAM_GPU_RENDER_SLOTS` mask renders at once (half of the rest at most) and the embedding cache "
            "(at most `SAM_CACHE_BYTES`); the start-up log prints the split. A CUDA out-of-memory answers 503 "
            "`overloaded` and frees half the cached embeddings")
    budget_bytes: int | None = env_field(None, "SAM_GPU_MEMORY_BYTES", positive(parse_bytes),
                                         doc="the device memory budget in bytes, instead of `SAM_GPU_MEMORY_FRACTION`")
    max_render_slots: int = env_field(8, "SAM_GPU_RENDER_SLOTS", positive(int),
                                      doc="mask renders holding device memory at once")
    render_wait_s: float = env_field(20.0, "SAM_GPU_RENDER_WAIT_S", positive_float,
                                     doc="a render waits this long for a slot, then 503 `overloaded`")
    arena_caps: bool = env_field(True, "SAM_GPU_ARENA_CAPS", parse_bool,
                                 doc="cap the post-processing session's CUDA arena at the plan's render share (render "
                                     "slots x one run's bytes; `gpu_mem_limit`, growing by what is asked), so renders "
                                     "beyond the plan fail as 503 `overloaded` instead of taking the embedding cache's "
                                     "memory; the encoder and decoder are not capped (their share is an estimate). "
                                     "`SAM_CUDA_MEM_LIMIT`, when set, caps every session, and the smaller cap wins")

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"the GPU memory fraction must be within (0, 1], got {self.fraction}")
        if self.max_render_slots < 1 or self.render_wait_s <= 0:
            raise ValueError("render slots must be >= 1 and the render wait > 0 s")


@dataclass(frozen=True)
class DeviceMemoryPlan:
    """How one device's budget is spent (bytes; see the module docstring)."""

    total_bytes: int
    budget_bytes: int
    reserved_bytes: int
    render_slots: int
    render_run_pixels: int
    cache_bytes: int

    @property
    def render_run_bytes(self) -> int:
        return self.render_run_pixels * RENDER_BYTES_PER_PIXEL

    def describe(self) -> str:
        gib = 1 << 30
        return (f"device memory budget {self.budget_bytes / gib:.1f} of {self.total_bytes / gib:.1f} GiB: "
                f"sessions {self.reserved_bytes / gib:.1f} GiB (estimate), {self.render_slots} renders of "
                f"{self.render_run_bytes / gib:.2f} GiB at once, embedding cache {self.cache_bytes / gib:.2f} GiB")


#: Bytes per pixel of the cut-out's pixels copied from the device: uint8 RGB (the alpha is made
#: on the host from the union mask, ``runtime.outputs.cutout_rgba``).
CUTOUT_COPY_BYTES_PER_PIXEL = 3


#: The largest page-locked host buffer the cut-out keeps between requests: a 12 MP output's pixels
#: (4032 x 3024 x 3, 36.6 MB). A larger output gets a buffer of its own for that copy.
CUTOUT_STAGING_KEEP_BYTES = 4032 * 3024 * CUTOUT_COPY_BYTES_PER_PIXEL


def cutout_copy_bytes(out_size_hw: tuple[int, int]) -> int:
    """Bytes copied device -> host per cut-out when ``cutout_resize.onnx`` resizes on the device:
    the output's (H', W') pixels x 3, whatever the photo's size."""
    height, width = out_size_hw
    if height <= 0 or width <= 0:
        raise ValueError(f"output size must be positive, got {out_size_hw}")
    return height * width * CUTOUT_COPY_BYTES_PER_PIXEL


def session_reserve_bytes(model_file_bytes: int) -> int:
    """The estimated device memory of the model sessions whose graph files total ``model_file_bytes``."""
    return SESSION_BYTES_PER_MODEL_BYTE * model_file_bytes + SESSION_OVERHEAD_BYTES


def plan_device_memory(total_bytes: int, settings: DeviceMemorySettings, reserved_bytes: int,
                       cache_bytes_wanted: int, render_run_pixels: int = DEFAULT_RENDER_RUN_PIXELS) -> DeviceMemoryPlan:
    """Split the budget: sessions first, then renders (half of the rest at most), then the cache.

    Raises ``ValueError`` naming the setting when the budget cannot hold the sessions and one
    render of at least one 12 MP mask.
    """
    budget = settings.budget_bytes if settings.budget_bytes is not None else int(total_bytes * settings.fraction)
    budget = min(budget, total_bytes)
    working = budget - reserved_bytes
    minimum_run_pixels = 12_000_000
    if working < 2 * minimum_run_pixels * RENDER_BYTES_PER_PIXEL:
        raise ValueError(f"a device memory budget of {budget} bytes leaves {working} bytes beside the sessions' "
                         f"estimated {reserved_bytes}: raise SAM_GPU_MEMORY_FRACTION or SAM_GPU_MEMORY_BYTES")
    render_share = working // 2
    run_pixels = max(minimum_run_pixels, min(render_run_pixels, render_share // RENDER_BYTES_PER_PIXEL))
    slots = max(1, min(settings.max_render_slots, render_share // (run_pixels * RENDER_BYTES_PER_PIXEL)))
    cache = min(cache_bytes_wanted, working - slots * run_pixels * RENDER_BYTES_PER_PIXEL)
    return DeviceMemoryPlan(total_bytes, budget, reserved_bytes, slots, run_pixels, cache)


def arena_limits(plan: DeviceMemoryPlan) -> dict[str, int]:
    """The CUDA arena cap (bytes) of each session whose peak ``plan`` bounds, by role.

    The post-processing graph's: its runs hold at most ``render_run_bytes`` each and at most
    ``render_slots`` run at once, so its arena never needs more than their product; capped
    there, a render beyond the plan fails as an out-of-memory (503 ``overloaded``) instead of
    taking the embedding cache's share. The encoder and decoder are not capped: their share
    (``reserved_bytes``) is an estimate from the graph files, and the decoder's working memory
    grows with the prompts of a run (64 prompts took 3.9 GB on the CPU EP), so a cap there would
    turn the estimate's error into refused requests until a GPU run measures the real peak. The
    pre-processing and cut-out graphs hold a photo's copies only during a run and hand them back
    (arena shrinkage).
    """
    return {"postprocess": plan.render_slots * plan.render_run_bytes}


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (from ONNX Runtime, CUDA or cuBLAS) reports a failed allocation."""
    return isinstance(error, MemoryError) or bool(OUT_OF_MEMORY_PATTERNS.search(str(error)))


@contextlib.contextmanager
def out_of_memory_is_overload(stage: str) -> Iterator[None]:
    """Turn an allocation failure inside the block into ``DeviceMemoryExhausted`` (503 overloaded)."""
    try:
        yield
    except DeviceMemoryExhausted:
        raise
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise DeviceMemoryExhausted(f"out of memory during {stage}; retry") from exc


class RenderSlots:
    """At most ``slots`` renders hold their device memory at once; a render waits ``wait_s`` for a slot."""

    def __init__(self, slots: int, wait_s: float) -> None:
        if slots < 1 or wait_s <= 0:
            raise ValueError("render slots must be >= 1 and the wait > 0 s")
        self.slots = slots
        self.wait_s = wait_s
        self._semaphore = threading.BoundedSemaphore(slots)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if not self._semaphore.acquire(timeout=self.wait_s):
            raise DeviceMemoryExhausted(f"all {self.slots} mask renders were busy for {self.wait_s:g} s "
                                        "(SAM_GPU_RENDER_SLOTS); retry")
        try:
            yield
        finally:
            self._semaphore.release()


def device_plan(cuda: CudaRuntime | None, settings: DeviceMemorySettings, model_file_bytes: int,
                cache_bytes_wanted: int) -> DeviceMemoryPlan | None:
    """The plan for the device ``cuda`` names (None, logged, when its memory cannot be read).

    Raises ``ValueError`` when the budget cannot hold the sessions and one render.
    """
    if cuda is None:
        log.warning("no CUDA runtime library to read the GPU's memory from: no device memory budget")
        return None
    try:
        _, total = cuda.memory_bytes()
    except CudaError as exc:
        log.warning("cannot read the GPU's memory (%s): no device memory budget", exc)
        return None
    plan = plan_device_memory(total, settings, session_reserve_bytes(model_file_bytes), cache_bytes_wanted)
    log.info("CUDA device %d: %s", cuda.device_id, plan.describe())
    return plan
