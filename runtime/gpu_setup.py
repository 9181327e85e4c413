"""Start-up steps of the GPU path: the device memory plan, the renders it allows, TensorRT's engines."""

from __future__ import annotations

import logging
from pathlib import Path

from runtime import device_memory, ort_runner, trt_cache
from runtime.cuda_runtime import CudaRuntime
from runtime.device_memory import DeviceMemoryPlan, RenderSlots
from runtime.errors import ModelLoadError
from runtime.manifest import Manifest
from runtime.providers import ProviderName
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
