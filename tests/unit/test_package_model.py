"""package_model.py: archive layout, determinism, validation."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from package_model import build_archive, requirements_text

REPO = Path(__file__).resolve().parents[2]


def test_archive_layout_and_determinism(tiny_model_dir: Path, tmp_path: Path) -> None:
    path, digest = build_archive(tiny_model_dir, tmp_path / "a")
    again, digest_again = build_archive(tiny_model_dir, tmp_path / "b")
    assert digest == digest_again and path.read_bytes() == again.read_bytes()
    with tarfile.open(path) as archive:
        names = set(archive.getnames())
        assert {"manifest.json", "encoder.onnx", "decoder.onnx", "encoder_fp16.onnx", "decoder_fp16.onnx"} <= names
        assert {"code/inference.py", "code/requirements.txt", "code/runtime/engine.py", "code/serving/app.py"} <= names
        assert not any(name.startswith(("code/export", "code/tests")) or "__pycache__" in name for name in names)
        requirements = archive.extractfile("code/requirements.txt").read().decode()  # type: ignore[union-attr]
    assert "onnxruntime==" in requirements and "-r " not in requirements and "torch" not in requirements
    assert requirements == requirements_text()


def test_broken_model_directory_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "decoder.onnx").unlink()
    result = subprocess.run([sys.executable, str(REPO / "package_model.py"), "--model-dir", str(broken),
                             "--output-dir", str(tmp_path / "out")], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "decoder model file" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "model.tar.gz").exists()


def test_prebuilt_tensorrt_engines_travel_in_the_archive(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "trt-cache").mkdir()
    (model / "trt-cache" / "TensorrtExecutionProvider_encoder.engine").write_bytes(b"engine")
    path, _ = build_archive(model, tmp_path / "out")
    with tarfile.open(path) as archive:
        assert archive.extractfile("trt-cache/TensorrtExecutionProvider_encoder.engine").read() == b"engine"  # type: ignore[union-attr]
