"""GPU precision and TensorRT engines: fp16 on CUDA unless told otherwise, never fp32 silently,
the start-up log names the precision, and shipped TensorRT engines are copied into the cache."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from runtime.engine import SamEngine
from runtime.errors import ModelLoadError
from runtime.manifest import Manifest, load_manifest
from runtime.ort_runner import choose_model_file, graph_precision
from runtime.settings import RuntimeSettings
from runtime.trt_cache import SHIPPED_ENGINES_DIR, seed_engine_cache


@pytest.fixture(scope="module")
def manifests(tiny_model_dir: Path) -> tuple[Manifest, Manifest]:
    """(the export with fp16 variants, the same without them)."""
    full = load_manifest(tiny_model_dir, verify_checksums=False)
    fp32_only = dataclasses.replace(full, models={k: v for k, v in full.models.items() if not k.endswith("_fp16")})
    return full, fp32_only


def _settings(precision: str) -> RuntimeSettings:
    return RuntimeSettings.from_env({"SAM_PRECISION": precision})


def test_cuda_runs_the_fp16_graphs_by_default(manifests: tuple[Manifest, Manifest]) -> None:
    full, _ = manifests
    assert [choose_model_file(full, role, "cuda", _settings("auto")) for role in ("encoder", "decoder")] == [
        "encoder_fp16.onnx", "decoder_fp16.onnx"]
    assert choose_model_file(full, "encoder", "cuda", _settings("fp32")) == "encoder.onnx"
    assert choose_model_file(full, "encoder", "tensorrt", _settings("auto")) == "encoder.onnx"  # TensorRT builds fp16
    assert choose_model_file(full, "encoder", "cpu", _settings("auto")) == "encoder.onnx"


def test_fp16_asked_without_fp16_graphs_fails_at_start_up(manifests: tuple[Manifest, Manifest]) -> None:
    _, fp32_only = manifests
    with pytest.raises(ModelLoadError, match="SAM_PRECISION=fp16 but the export has no encoder_fp16 graph"):
        choose_model_file(fp32_only, "encoder", "cuda", _settings("fp16"))


def test_fp32_on_cuda_by_default_is_a_warning(manifests: tuple[Manifest, Manifest],
                                             caplog: pytest.LogCaptureFixture) -> None:
    _, fp32_only = manifests
    with caplog.at_level(logging.WARNING, logger="runtime.ort_runner"):
        assert choose_model_file(fp32_only, "decoder", "cuda", _settings("auto")) == "decoder.onnx"
    assert any("no decoder_fp16 graph" in r.getMessage() and "--fp16" in r.getMessage() for r in caplog.records)


def test_the_precision_each_graph_runs_at(manifests: tuple[Manifest, Manifest]) -> None:
    full, _ = manifests
    assert graph_precision(full, "encoder_fp16.onnx", "cuda", _settings("auto")) == "fp16"
    assert graph_precision(full, "encoder.onnx", "tensorrt", _settings("auto")) == "fp32 graph, TensorRT fp16 engine"
    no_trt_fp16 = RuntimeSettings.from_env({"SAM_TRT_FP16": "false"})
    assert graph_precision(full, "encoder.onnx", "tensorrt", no_trt_fp16) == "fp32 graph, TensorRT fp32 engine"


def test_the_start_up_log_names_each_graph_and_its_precision(tiny_model_dir: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="runtime.ort_runner"):
        SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings.from_env({"SAM_PROVIDERS": "cpu",
                                                                           "SAM_CPU_ENGINE": "onnxruntime"}))
    messages = [r.getMessage() for r in caplog.records]
    assert "encoder runs encoder.onnx (fp32) on cpu" in messages
    assert "decoder runs decoder.onnx (fp32) on cpu" in messages


def test_shipped_engines_are_copied_into_the_cache_and_kept_there(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    model_dir, cache = tmp_path / "model", tmp_path / "cache"
    (model_dir / SHIPPED_ENGINES_DIR).mkdir(parents=True)
    (model_dir / SHIPPED_ENGINES_DIR / "TensorrtExecutionProvider_encoder_1.engine").write_bytes(b"shipped")
    (model_dir / SHIPPED_ENGINES_DIR / "timing.cache").write_bytes(b"timing")
    cache.mkdir()
    (cache / "timing.cache").write_bytes(b"newer")
    assert seed_engine_cache(model_dir, cache) == 1
    assert (cache / "TensorrtExecutionProvider_encoder_1.engine").read_bytes() == b"shipped"
    assert (cache / "timing.cache").read_bytes() == b"newer"  # what this instance has is kept
    assert seed_engine_cache(model_dir, cache) == 0
    with caplog.at_level(logging.WARNING, logger="runtime.trt_cache"):
        assert seed_engine_cache(tmp_path / "no-engines", tmp_path / "empty-cache") == 0
    assert any("TensorRT builds them now" in r.getMessage() for r in caplog.records)
