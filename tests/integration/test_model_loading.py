"""Model directories that cannot be served are refused at load with a message naming why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from runtime.engine import SamEngine
from runtime.errors import ModelLoadError, ProviderUnavailable
from runtime.providers import ProviderConfig
from runtime.settings import RuntimeSettings


@pytest.fixture()
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def test_loads_and_warms_up_on_cpu(tiny_model_dir: Path) -> None:
    engine = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings())
    assert engine.provider == "cpu" and not engine.on_gpu
    engine.warm_up()


@pytest.mark.parametrize("damage,match", [
    (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda d: (d / "decoder.onnx").unlink(), "decoder model file .* is missing"),
    (lambda d: (d / "encoder.onnx").write_bytes((d / "encoder.onnx").read_bytes()[:1000]), "truncated"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
    (lambda d: (d / "manifest.json").write_text("[]"), "JSON object"),
])
def test_damaged_directories_are_refused(model_copy: Path, damage, match: str) -> None:  # type: ignore[no-untyped-def]
    damage(model_copy)
    with pytest.raises(ModelLoadError, match=match):
        SamEngine.from_model_dir(model_copy, RuntimeSettings())


def test_same_size_different_content_fails_checksum(model_copy: Path) -> None:
    path = model_copy / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="SHA-256"):
        SamEngine.from_model_dir(model_copy, RuntimeSettings())


def test_garbage_model_with_matching_manifest_is_refused_by_onnxruntime(model_copy: Path) -> None:
    manifest = json.loads((model_copy / "manifest.json").read_text())
    garbage = b"\x00garbage" * 100
    (model_copy / "decoder.onnx").write_bytes(garbage)
    manifest["models"]["decoder"]["size_bytes"] = len(garbage)
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load"):
        SamEngine.from_model_dir(model_copy, RuntimeSettings(verify_model_checksums=False))


def test_wrong_signature_is_refused(model_copy: Path) -> None:
    manifest = json.loads((model_copy / "manifest.json").read_text())
    manifest["models"]["decoder"]["inputs"][1]["name"] = "coords"
    (model_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="signature"):
        SamEngine.from_model_dir(model_copy, RuntimeSettings())


def test_required_gpu_on_a_cpu_machine_fails_clearly(tiny_model_dir: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA provider")
    with pytest.raises(ProviderUnavailable, match="GPU provider is required"):
        SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(providers=ProviderConfig(require_gpu=True)))
