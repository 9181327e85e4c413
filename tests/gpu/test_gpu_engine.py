"""GPU paths: CUDA/TensorRT sessions, device-resident embeddings, fp16 (skipped without a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from runtime.cache import EmbeddingCache
from runtime.engine import SamEngine
from runtime.gpu_libraries import TENSORRT_LIBRARIES, library_problem
from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.masks import mask_iou
from runtime.ort_runner import preload_gpu_libraries
from runtime.providers import ProviderConfig
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                       reason="no CUDA execution provider: onnxruntime-gpu with a CUDA GPU is not present on this machine"),
]


def _extract(engine: SamEngine, data: bytes) -> np.ndarray:
    clicks = (Click(120.0, 80.0), Click(300.0, 200.0))
    return HoldExtractor(engine, EmbeddingCache(64 << 20)).extract(ExtractRequest(clicks, image_bytes=data)).mask


def _cpu_answer(model_dir: Path, data: bytes) -> np.ndarray:
    cpu = SamEngine.from_model_dir(model_dir, RuntimeSettings(providers=ProviderConfig(requested=("cpu",))))
    return _extract(cpu, data)


def test_cuda_engine_keeps_embeddings_on_device_and_matches_cpu(tiny_model_dir: Path) -> None:
    gpu = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(
        providers=ProviderConfig(requested=("cuda",), require_gpu=True), precision="fp32", cpu_engine="openvino"))
    cpu = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(providers=ProviderConfig(requested=("cpu",))))
    assert gpu.provider == "cuda" and gpu.on_gpu
    assert gpu.backends == {"encoder": "onnxruntime", "decoder": "onnxruntime",  # SAM_CPU_ENGINE is for CPU only
                           "preprocess": "onnxruntime", "postprocess": "onnxruntime"}  # graphs on the CUDA EP
    image = synthetic_image((480, 640), 3)
    embedding = gpu.encode(gpu.prepare(Image.fromarray(image)))
    assert isinstance(embedding.value, ort.OrtValue) and embedding.value.device_name().lower() == "cuda"
    data = encode(image)
    assert mask_iou(_extract(gpu, data), _extract(cpu, data)) > 0.99


def test_cuda_fp16_graphs_run(tiny_model_dir: Path) -> None:
    engine = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(
        providers=ProviderConfig(requested=("cuda",), require_gpu=True), precision="fp16"))
    data = encode(synthetic_image((300, 400), 5))
    mask = _extract(engine, data)
    assert mask.shape == (300, 400)
    assert mask_iou(mask, _cpu_answer(tiny_model_dir, data)) > 0.98  # fp16 measured 0.998 on vit_b (H100)


def _tensorrt_problem() -> str | None:
    """Why the TensorRT provider cannot run here (the runtime's own check), or None."""
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return "this ONNX Runtime build has no TensorRT execution provider"
    preload_gpu_libraries()
    return library_problem(TENSORRT_LIBRARIES)


TENSORRT_PROBLEM = _tensorrt_problem() if "CUDAExecutionProvider" in ort.get_available_providers() else None


@pytest.mark.skipif(TENSORRT_PROBLEM is not None, reason=f"TensorRT cannot be used: {TENSORRT_PROBLEM}")
def test_tensorrt_engine_builds_with_profiles(tiny_model_dir: Path, tmp_path: Path) -> None:
    from runtime.providers import TensorRTOptions

    settings = RuntimeSettings(providers=ProviderConfig(
        requested=("tensorrt",), require_gpu=True, tensorrt=TensorRTOptions(cache_dir=str(tmp_path), max_prompts=16)))
    engine = SamEngine.from_model_dir(tiny_model_dir, settings)
    assert engine.provider == "tensorrt"
    data = encode(synthetic_image((300, 400), 6))
    mask = _extract(engine, data)
    assert mask.shape == (300, 400)
    assert mask_iou(mask, _cpu_answer(tiny_model_dir, data)) > 0.98  # TensorRT builds fp16 (SAM_TRT_FP16)
    assert any(tmp_path.iterdir()), "the TensorRT engine cache was not written"
