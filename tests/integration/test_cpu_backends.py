"""Real OpenVINO and ONNX Runtime engines on the tiny model: choice, parity, cache, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from runtime.cpu_backends import OpenVinoOptions
from runtime.engine import SamEngine
from runtime.errors import ModelLoadError
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image


@pytest.fixture(scope="module")
def reference(tiny_sam) -> tuple[np.ndarray, SamPredictor]:  # type: ignore[no-untyped-def]
    image = synthetic_image((700, 500), seed=8)
    predictor = SamPredictor(tiny_sam)
    with torch.no_grad():
        predictor.set_image(image)
    return image, predictor


@pytest.mark.parametrize("cpu_engine", ["onnxruntime", "openvino", "auto"])
def test_embedding_and_logits_match_pytorch(tiny_model_dir: Path, reference, cpu_engine: str) -> None:  # type: ignore[no-untyped-def]
    image, predictor = reference
    engine = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine=cpu_engine))  # type: ignore[arg-type]
    from PIL import Image

    embedding = engine.encode(engine.prepare(Image.fromarray(image)))
    expected = predictor.features.numpy()
    assert np.abs(embedding.value - expected).max() / np.abs(expected).max() < 1e-4
    coords = predictor.transform.apply_coords(np.array([[[120.0, 300.0], [0.0, 0.0]]]), image.shape[:2]).astype(np.float32)
    labels = np.array([[1.0, -1.0]], np.float32)
    decoded = engine.decode(embedding.value, coords, labels)
    with torch.no_grad():
        _, scores, low_res = predictor.predict_torch(torch.from_numpy(coords[:, :1]), torch.ones(1, 1),
                                                     multimask_output=False, return_logits=True)
    assert np.allclose(decoded.low_res_masks[:, :1], low_res.numpy(), atol=1e-3, rtol=1e-3)
    assert np.allclose(decoded.iou_predictions[:, 0], scores.numpy()[:, 0], atol=1e-4)


def test_auto_uses_openvino_for_the_encoder_when_installed(tiny_model_dir: Path) -> None:
    pytest.importorskip("openvino", reason="the openvino package is not installed")
    engine = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings())
    assert engine.backends == {"encoder": "openvino", "decoder": "onnxruntime", "preprocess": "pillow",  # f32 tier
                              "postprocess": "numpy"} and engine.provider == "cpu"


def test_openvino_cache_dir_is_filled_and_reused(tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = RuntimeSettings(cpu_engine="openvino", openvino=OpenVinoOptions(cache_dir=str(tmp_path / "ov")))
    first = SamEngine.from_model_dir(tiny_model_dir, settings)
    blobs = sorted(p.name for p in (tmp_path / "ov").iterdir())
    assert len(blobs) >= 2  # one compiled blob per graph
    second = SamEngine.from_model_dir(tiny_model_dir, settings)
    from PIL import Image

    image = Image.fromarray(synthetic_image((300, 200), seed=1))
    a = first.encode(first.prepare(image)).value
    b = second.encode(second.prepare(image)).value
    assert np.array_equal(a, b)
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == blobs


def test_bf16_runs_where_the_cpu_has_it_and_is_a_start_up_error_elsewhere(tiny_model_dir: Path) -> None:
    ov = pytest.importorskip("openvino", reason="the openvino package is not installed")
    settings = RuntimeSettings(cpu_engine="openvino", cpu_precision="bf16")
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(ModelLoadError, match="SAM_CPU_PRECISION=bf16 cannot run: this CPU has no bfloat16"):
            SamEngine.from_model_dir(tiny_model_dir, settings)
        return
    engine = SamEngine.from_model_dir(tiny_model_dir, settings)
    assert engine.precision == "bf16"
    compiled = engine.encoder._compiled  # type: ignore[attr-defined]
    assert compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
    engine.warm_up()


def test_garbage_graph_is_refused_by_openvino(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    garbage = b"\x00garbage" * 100
    (model / "encoder.onnx").write_bytes(garbage)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["models"]["encoder"]["size_bytes"] = len(garbage)
    (model / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="OpenVINO cannot load .*encoder.onnx"):
        SamEngine.from_model_dir(model, RuntimeSettings(cpu_engine="openvino", verify_model_checksums=False))
