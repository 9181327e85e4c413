"""Execution-provider choice, options, fallback detection, and settings from the environment."""

from __future__ import annotations

import pytest

from runtime.env_values import parse_bytes
from runtime.errors import ProviderUnavailable
from runtime.providers import ProviderConfig, TensorRTOptions, check_active, provider_arguments, resolve_providers
from runtime.settings import RuntimeSettings

CPU_ONLY = ["AzureExecutionProvider", "CPUExecutionProvider"]
GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    assert resolve_providers(ProviderConfig(), GPU_BUILD) == ("tensorrt", "cuda", "cpu")
    assert resolve_providers(ProviderConfig(), CPU_ONLY) == ("cpu",)
    assert resolve_providers(ProviderConfig(), ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ("cuda", "cpu")


def test_explicit_order_drops_unavailable_and_keeps_cpu_last() -> None:
    assert resolve_providers(ProviderConfig(requested=("cuda", "tensorrt")), GPU_BUILD) == ("cuda", "tensorrt", "cpu")
    assert resolve_providers(ProviderConfig(requested=("tensorrt",)), CPU_ONLY) == ("cpu",)


def test_required_gpu_without_one_fails_with_a_reason() -> None:
    with pytest.raises(ProviderUnavailable, match="onnxruntime-gpu"):
        resolve_providers(ProviderConfig(require_gpu=True), CPU_ONLY)
    assert resolve_providers(ProviderConfig(require_gpu=True), GPU_BUILD) == ("tensorrt", "cuda")


def test_silent_cpu_fallback_is_detected() -> None:
    config = ProviderConfig(require_gpu=True)
    with pytest.raises(ProviderUnavailable, match="fell back"):
        check_active("encoder", ["CPUExecutionProvider"], ("tensorrt", "cuda"), config)
    assert check_active("encoder", ["CUDAExecutionProvider", "CPUExecutionProvider"], ("tensorrt", "cuda"), config) == "cuda"
    assert check_active("decoder", ["CPUExecutionProvider"], ("cuda", "cpu"), ProviderConfig()) == "cpu"


def test_tensorrt_options_and_profiles_cover_every_dynamic_input() -> None:
    options = TensorRTOptions(fp16=True, cache_dir="/cache", max_prompts=32, opt_prompts=4, max_points=10)
    decoder = options.provider_options("decoder")
    assert decoder["trt_fp16_enable"] == "1" and decoder["trt_engine_cache_path"] == "/cache"
    assert decoder["trt_timing_cache_path"] == "/cache"
    for key in ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"):
        names = {part.split(":")[0] for part in decoder[key].split(",")}
        assert names == {"image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"}
    assert "point_coords:32x10x2" in decoder["trt_profile_max_shapes"]
    assert "point_coords:4x2x2" in decoder["trt_profile_opt_shapes"]
    assert "trt_profile_min_shapes" not in options.provider_options("encoder")
    with pytest.raises(ValueError):
        TensorRTOptions(max_prompts=4, opt_prompts=8)


def test_provider_arguments_carry_options_per_provider() -> None:
    config = ProviderConfig()
    arguments = provider_arguments(config, ("tensorrt", "cuda", "cpu"), "decoder")
    assert [name for name, _ in arguments] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert arguments[1][1]["device_id"] == "0" and arguments[2][1] == {}


def test_settings_from_env() -> None:
    settings = RuntimeSettings.from_env({
        "SAM_PROVIDERS": "cuda, cpu", "SAM_REQUIRE_GPU": "yes", "SAM_CACHE_BYTES": "512MiB",
        "SAM_TRT_FP16": "0", "SAM_TRT_CACHE_DIR": "/opt/trt", "SAM_CPU_THREADS": "2", "SAM_PRECISION": "fp16",
        "SAM_MAX_CLICKS": "10",
    })
    assert settings.providers.requested == ("cuda", "cpu") and settings.providers.require_gpu
    assert settings.cache_bytes == 512 * 1024 * 1024 and settings.cache_budget(on_gpu=True) == 512 << 20
    assert not settings.providers.tensorrt.fp16 and settings.providers.tensorrt.cache_dir == "/opt/trt"
    assert settings.providers.cpu.intra_op_threads == 2 and settings.precision == "fp16" and settings.max_clicks == 10
    defaults = RuntimeSettings.from_env({})
    assert defaults.providers.requested == "auto" and defaults.cache_budget(on_gpu=False) == 1 << 30


@pytest.mark.parametrize("name,value", [
    ("SAM_PROVIDERS", "gpu"), ("SAM_CACHE_BYTES", "lots"), ("SAM_CACHE_BYTES", "0"),
    ("SAM_REQUIRE_GPU", "maybe"), ("SAM_PRECISION", "int8"), ("SAM_MAX_CLICKS", "-1"),
])
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        RuntimeSettings.from_env({name: value})


def test_parse_bytes_units() -> None:
    assert parse_bytes("2GiB") == 2 << 30 and parse_bytes("1.5 MB") == 1_500_000 and parse_bytes("42") == 42


def test_inconsistent_tensorrt_settings_name_the_family() -> None:
    with pytest.raises(ValueError, match="SAM_TRT_"):
        RuntimeSettings.from_env({"SAM_TRT_MAX_PROMPTS": "4", "SAM_TRT_OPT_PROMPTS": "8"})
