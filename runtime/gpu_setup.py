"""Start-up steps of the GPU path: the device memory plan, the renders it allows, TensorRT's engines."""

from __future__ import annotations

import logging
from pathlib import Path

from runtime import device_memory, ort_runner, trt_cache
from runtime.cuda_runtime import CudaRuntime
from runtime.cutout_resize import OrtCutoutResizer
from runtime.device_memory import CUTOUT_STAGING_KEEP_BYTES, DeviceMemoryPlan, RenderSlots
from runtime.errors import ModelLoadError
from runtime.graph_runners import device_arena_shrinkage
from runtime.host_staging import HostAllocator, PageableAllocator, PinnedAllocator, StagingBuffer
from runtime.manifest import Manifest
from runtime.providers import GPU_PROVIDERS, ProviderName
from runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)


def model_file_bytes(manifest: Manifest, provider: ProviderName, settings: RuntimeSettings) -> int:
    """Bytes of the encoder and decoder graph files (with external data) that ``provider`` runs."""
    files = {ort_runner.choose_model_file(manifest, role, provider, settings) for role in ("encoder", "decoder")}
    return sum(entry.size_bytes + (entry.external_data_size_bytes or 0)
               for entry in manifest.models.values() if entry.file in files)


def memory_plan(manifest: Manifest, provider: ProviderName, settings: RuntimeSettings) -> DeviceMemoryPlan | None:
    """The device memory plan of ``SAM_CUDA_DEVICE_ID`` (None when its memory cannot be read).

    Raises ``ModelLoadError`` when the budget cannot hold the sessions and one render.
    """
    device_id = settings.providers.cuda.device_id
    try:
        return device_memory.device_plan(CudaRuntime.load(device_id), settings.device_memory,
                                         model_file_bytes(manifest, provider, settings),
                                         settings.cache_budget(on_gpu=True))
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def arena_limit(plan: DeviceMemoryPlan | None, role: str, settings: RuntimeSettings) -> int | None:
    """The cap of ``role``'s CUDA arena under ``plan`` (``device_memory.arena_limits``); None without a
    plan, with ``SAM_GPU_ARENA_CAPS=false``, or for a role the plan does not bound."""
    if plan is None or not settings.device_memory.arena_caps:
        return None
    return device_memory.arena_limits(plan).get(role)


def render_limits(plan: DeviceMemoryPlan | None, settings: RuntimeSettings) -> tuple[int, RenderSlots | None]:
    """(pixels per post-processing run, render slots) under ``plan``; the defaults without one."""
    if plan is None:
        return device_memory.DEFAULT_RENDER_RUN_PIXELS, None
    return plan.render_run_pixels, RenderSlots(plan.render_slots, settings.device_memory.render_wait_s)


def seed_tensorrt_engines(model_dir: Path, cache_dir: Path) -> None:
    """Copy the model directory's prebuilt engines into the cache (``runtime.trt_cache``); never fatal."""
    try:
        trt_cache.seed_engine_cache(model_dir, cache_dir)
    except OSError as exc:  # an unwritable cache: TensorRT builds (or fails) and says so itself
        log.warning("cannot prepare the TensorRT engine cache %s: %s", cache_dir, exc)


def open_cutout_resizer(model_dir: Path, manifest: Manifest, providers: tuple[ProviderName, ...],
                        settings: RuntimeSettings) -> OrtCutoutResizer | None:
    """``cutout_resize.onnx`` on ``providers`` (the CUDA EP in TensorRT's place), copying into a
    reused pinned buffer on a GPU (pageable on the CPU EP); None when the export has no such graph."""
    if "cutout_resize" not in manifest.models:
        log.info("%s has no cutout_resize graph (an older export): the cut-out is resized on the CPU", model_dir)
        return None
    session, active = ort_runner.open_session(model_dir, manifest, "cutout_resize", providers, settings)
    device_id = settings.providers.cuda.device_id
    cuda = CudaRuntime.load(device_id) if active in GPU_PROVIDERS else None
    allocator: HostAllocator = PinnedAllocator(cuda) if cuda is not None else PageableAllocator()
    log.info("the cut-out is resized by cutout_resize.onnx on %s, copied into %s host memory", active, allocator.kind)
    return OrtCutoutResizer(session, active, StagingBuffer(allocator, CUTOUT_STAGING_KEEP_BYTES), device_id,
                            device_arena_shrinkage(active, device_id))
