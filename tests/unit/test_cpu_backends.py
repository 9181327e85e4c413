"""CPU engine choice and OpenVINO options: what each setting selects, and bad values named."""

from __future__ import annotations

import pytest

from runtime.cpu_backends import OpenVinoOptions, choose_cpu_backends
from runtime.engine import choose_backends
from runtime.errors import ModelLoadError
from runtime.openvino_runner import compile_config, inference_precision
from runtime.settings import RuntimeSettings


@pytest.mark.parametrize("setting,installed,tier,expected", [
    ("auto", True, "f32", {"encoder": "openvino", "decoder": "onnxruntime"}),  # the faster engine per graph, measured
    ("auto", True, "bf16", {"encoder": "openvino", "decoder": "openvino"}),
    ("auto", True, "int8", {"encoder": "openvino", "decoder": "openvino"}),
    ("auto", False, "f32", {"encoder": "onnxruntime", "decoder": "onnxruntime"}),
    ("auto", False, "int8", {"encoder": "onnxruntime", "decoder": "onnxruntime"}),
    ("onnxruntime", True, "int8", {"encoder": "onnxruntime", "decoder": "onnxruntime"}),
    ("openvino", True, "f32", {"encoder": "openvino", "decoder": "openvino"}),
])
def test_engine_per_graph(setting, installed, tier, expected) -> None:  # type: ignore[no-untyped-def]
    assert choose_cpu_backends(setting, installed, tier) == expected


@pytest.mark.parametrize("tier,bf16_cpu,expected", [
    ("f32", True, "f32"), ("bf16", True, "bf16"),
    ("int8", True, "bf16"),  # the layers left in float: faster in bf16 where the CPU has it
    ("int8", False, "f32"),
])
def test_inference_precision_per_tier(tier, bf16_cpu, expected) -> None:  # type: ignore[no-untyped-def]
    assert inference_precision(tier, bf16_cpu) == expected


@pytest.mark.parametrize("providers", [("cuda", "cpu"), ("tensorrt", "cuda", "cpu")])
def test_gpu_providers_keep_both_graphs_on_onnxruntime(providers) -> None:  # type: ignore[no-untyped-def]
    settings = RuntimeSettings(cpu_engine="openvino")
    assert choose_backends(settings, providers) == {"encoder": "onnxruntime", "decoder": "onnxruntime"}


def test_openvino_required_but_missing_is_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runtime.engine.openvino_available", lambda: False)
    with pytest.raises(ModelLoadError, match="pip install openvino"):
        choose_backends(RuntimeSettings(cpu_engine="openvino"), ("cpu",))
    assert choose_backends(RuntimeSettings(), ("cpu",)) == {"encoder": "onnxruntime", "decoder": "onnxruntime"}


def test_openvino_asked_but_missing_names_the_fix() -> None:
    with pytest.raises(ValueError, match="openvino package is not installed.*pip install openvino"):
        choose_cpu_backends("openvino", False)


def test_settings_from_env() -> None:
    settings = RuntimeSettings.from_env({"SAM_CPU_ENGINE": " OpenVINO ", "SAM_OPENVINO_CACHE_DIR": "/tmp/ov-cache"})
    assert settings.cpu_engine == "openvino"
    assert settings.openvino == OpenVinoOptions(cache_dir="/tmp/ov-cache")
    defaults = RuntimeSettings.from_env({})
    assert defaults.cpu_engine == "auto" and defaults.openvino == OpenVinoOptions(None)


@pytest.mark.parametrize("name,value", [("SAM_CPU_ENGINE", "tensorflow"), ("SAM_OPENVINO_PRECISION", "fp16")])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{name}='{value}' is invalid"):
        RuntimeSettings.from_env({name: value})


def test_compile_config() -> None:
    assert compile_config(OpenVinoOptions(), 0) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    assert compile_config(OpenVinoOptions("/c"), 3, "bf16") == {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": 3, "CACHE_DIR": "/c"}


@pytest.mark.parametrize("spinning", [True, False])
def test_encoder_pool_never_spins_and_the_decoder_follows_the_setting(spinning: bool) -> None:
    from runtime.ort_runner import session_options
    from runtime.providers import CpuOptions, ProviderConfig

    settings = RuntimeSettings(providers=ProviderConfig(cpu=CpuOptions(spinning=spinning)))
    encoder = session_options(settings, "encoder")
    decoder = session_options(settings, "decoder")
    assert encoder.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    expected = "0" if not spinning else None
    try:
        value = decoder.get_session_config_entry("session.intra_op.allow_spinning")
    except RuntimeError:  # not set: ONNX Runtime's default (spinning) applies
        value = None
    assert value == expected
