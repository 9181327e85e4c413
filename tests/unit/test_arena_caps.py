"""Each CUDA session's arena capped from the device-memory plan (``device_memory.arena_limits``,
``gpu_setup.arena_limit``) and the CUDA EP options that carry the cap (``CudaOptions``); the
option names are those of the pinned onnxruntime-gpu 1.26.0's CUDA provider."""

from __future__ import annotations

from runtime import gpu_setup
from runtime.device_memory import (
    RENDER_BYTES_PER_PIXEL,
    DeviceMemorySettings,
    arena_limits,
    plan_device_memory,
    session_reserve_bytes,
)
from runtime.providers import CudaOptions, ProviderConfig, provider_arguments
from runtime.settings import RuntimeSettings

GIB = 1 << 30
T4_BYTES = 15 * GIB


def _t4_plan():  # type: ignore[no-untyped-def]
    return plan_device_memory(T4_BYTES, DeviceMemorySettings(), session_reserve_bytes(200 << 20),
                              cache_bytes_wanted=8 * GIB)


def test_the_renderers_cap_is_its_planned_share_and_the_plan_still_adds_up() -> None:
    plan = _t4_plan()
    limits = arena_limits(plan)
    assert limits == {"postprocess": plan.render_slots * plan.render_run_pixels * RENDER_BYTES_PER_PIXEL}
    assert plan.reserved_bytes + limits["postprocess"] + plan.cache_bytes <= plan.budget_bytes
    assert limits["postprocess"] >= plan.render_run_bytes  # one whole run always fits


def test_the_cap_reaches_the_cuda_options_of_that_session_only() -> None:
    plan = _t4_plan()
    settings = RuntimeSettings()
    cap = gpu_setup.arena_limit(plan, "postprocess", settings)
    assert cap == arena_limits(plan)["postprocess"]
    for role in ("encoder", "decoder", "preprocess", "cutout_resize"):
        assert gpu_setup.arena_limit(plan, role, settings) is None
    arguments = dict(provider_arguments(settings.providers, ("cuda", "cpu"), "postprocess", cap))
    assert arguments["CUDAExecutionProvider"]["gpu_mem_limit"] == str(cap)
    assert arguments["CUDAExecutionProvider"]["arena_extend_strategy"] == "kSameAsRequested"  # grows to the cap
    assert "gpu_mem_limit" not in dict(provider_arguments(settings.providers, ("cuda", "cpu"), "encoder"))[
        "CUDAExecutionProvider"]


def test_no_plan_or_caps_off_means_no_cap() -> None:
    off = RuntimeSettings.from_env({"SAM_GPU_ARENA_CAPS": "false"})
    assert off.device_memory.arena_caps is False
    assert gpu_setup.arena_limit(_t4_plan(), "postprocess", off) is None
    assert gpu_setup.arena_limit(None, "postprocess", RuntimeSettings()) is None


def test_sam_cuda_mem_limit_and_the_plan_give_the_smaller_cap() -> None:
    config = ProviderConfig(cuda=CudaOptions(gpu_mem_limit_bytes=2 * GIB))
    assert config.cuda.provider_options(3 * GIB)["gpu_mem_limit"] == str(2 * GIB)
    assert config.cuda.provider_options(GIB)["gpu_mem_limit"] == str(GIB)
    assert config.cuda.provider_options()["gpu_mem_limit"] == str(2 * GIB)
    assert "gpu_mem_limit" not in CudaOptions().provider_options()
