"""Checks of the GPU image that need no GPU: libraries, providers, driver-independent evidence.

Inside the image (``buildah run``, as its user): onnxruntime imports and lists the CUDA
provider; ``ldd`` resolves every library the CUDA provider links through the loader cache
that the Dockerfile wrote (no ``LD_LIBRARY_PATH``), except the host driver's own
``libcuda.so.1`` (the CUDA 13 libraries link it; SageMaker's NVIDIA runtime mounts it); the TensorRT provider's libraries resolve
by name when TensorRT is installed, and otherwise exactly ``libnvinfer.so.10`` and
``libnvonnxparser.so.10`` are missing and the runtime's own check says so. From the host, on
the image's mounted root file system: ``readelf -d`` gives the TensorRT provider's
``DT_NEEDED`` entries (they must be the names ``runtime.gpu_libraries`` loads), and NVIDIA's
``cuobjdump`` (PyPI ``nvidia-cuda-cuobjdump``) lists the SASS architectures of the CUDA
provider, cuBLAS and cuDNN: sm_75 (NVIDIA T4, ml.g4dn) must be there, and the only kernels
without sm_75 code may be bf16 and flash-attention ones, which ONNX Runtime runs on sm_80+ only.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from runtime.gpu_libraries import TENSORRT_LIBRARIES
from scripts.container.buildah import Buildah
from scripts.container.serve_check import require

CUOBJDUMP_WHEEL = "nvidia-cuda-cuobjdump==13.5.37"
TURING = "sm_75"

INSIDE = r"""
import importlib.metadata as metadata, json, os, subprocess
import onnxruntime as ort
from onnxruntime.capi import build_and_package_info as build
from runtime.gpu_libraries import TENSORRT_LIBRARIES, library_problem, unloadable_providers
from runtime.providers import ProviderConfig

capi = os.path.join(os.path.dirname(ort.__file__), "capi")
try:  # JPEG decoding on the GPU (runtime/gpu_jpeg_reader.py); it warns about nvJPEG2000/nvTIFF, which JPEG does not need
    from nvidia import nvimgcodec
    nvimgcodec_version = getattr(nvimgcodec, "__version__", "imported")
except Exception as exc:
    nvimgcodec_version = None
    nvimgcodec_error = repr(exc)
def ldd(name):
    out = subprocess.run(["ldd", os.path.join(capi, name)], capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: line.split("=>")[1].split("(")[0].strip() for line in out.splitlines() if "=>" in line}
dists = {d.metadata["Name"]: d.version for d in metadata.distributions()
         if d.metadata["Name"].startswith(("nvidia-", "tensorrt", "onnxruntime"))}
print(json.dumps({
    "onnxruntime": ort.__version__, "built_with_cuda": getattr(build, "cuda_version", None),
    "providers": ort.get_available_providers(), "capi": capi,
    "requires_dist": metadata.requires("onnxruntime-gpu"), "distributions": dists,
    "ldd_cuda": ldd("libonnxruntime_providers_cuda.so"), "ldd_tensorrt": ldd("libonnxruntime_providers_tensorrt.so"),
    "nvimgcodec": nvimgcodec_version, "nvimgcodec_error": None if nvimgcodec_version else nvimgcodec_error,
    "tensorrt_problem": library_problem(TENSORRT_LIBRARIES),
    "unloadable": unloadable_providers(ProviderConfig(), ort.get_available_providers()),
    "ldconfig_nvinfer": [l.strip() for l in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines() if "libnvinfer.so.10" in l],
}))
"""


def inside_image(buildah: Buildah, image: str) -> dict[str, Any]:
    """What the image itself reports (run as its user, in its working directory)."""
    container = buildah.container(image)
    try:
        done = buildah.run(container, ["python", "-c", INSIDE])
    finally:
        buildah.call("rm", container)
    require(done.returncode == 0, f"the check inside the GPU image failed:\n{done.stderr[-3000:]}")
    facts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return facts


def from_driver(name: str) -> bool:
    """Libraries of the host's NVIDIA driver, which the NVIDIA container runtime mounts on GPU hosts."""
    return name.startswith(("libcuda.so", "libnvidia-"))


def check_inside(facts: dict[str, Any], tensorrt: bool) -> None:
    require("CUDAExecutionProvider" in facts["providers"], f"no CUDA provider: {facts['providers']}")
    require(facts["nvimgcodec"] is not None, f"nvImageCodec does not import: {facts['nvimgcodec_error']}")
    missing_cuda = sorted(name for name, path in facts["ldd_cuda"].items() if path == "not found" and not from_driver(name))
    require(not missing_cuda, f"the CUDA provider's libraries do not resolve by name: {missing_cuda}")
    missing_trt = sorted(name for name, path in facts["ldd_tensorrt"].items()
                         if path == "not found" and not from_driver(name))
    if tensorrt:
        require(not missing_trt, f"the TensorRT provider's libraries do not resolve by name: {missing_trt}")
        require(facts["tensorrt_problem"] is None and facts["unloadable"] == {},
                f"TensorRT is installed but the runtime cannot load it: {facts['tensorrt_problem']}")
        require(bool(facts["ldconfig_nvinfer"]), "libnvinfer.so.10 is not in the loader cache")
    else:
        require(missing_trt == sorted(TENSORRT_LIBRARIES), f"without TensorRT, missing should be {TENSORRT_LIBRARIES}: "
                                                           f"{missing_trt}")
        require(str(facts["unloadable"].get("tensorrt", "")).startswith("libnvinfer.so.10 cannot be loaded"),
                f"the runtime does not leave TensorRT out: {facts['unloadable']}")


def tensorrt_needed(rootfs: Path, capi: str) -> list[str]:
    """``DT_NEEDED`` entries of the TensorRT provider that belong to TensorRT (host ``readelf -d``)."""
    if shutil.which("readelf") is None:
        raise RuntimeError("readelf is not installed: apt-get install -y binutils")
    library = rootfs / capi.lstrip("/") / "libonnxruntime_providers_tensorrt.so"
    out = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
    return [name for name in needed if name.startswith(("libnvinfer", "libnvonnxparser"))]


def cuobjdump(workdir: Path) -> Path:
    """NVIDIA's cuobjdump from its PyPI wheel, unpacked under ``workdir``."""
    target = workdir / "cuobjdump"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                    "-d", str(target), CUOBJDUMP_WHEEL], check=True, timeout=300)
    wheel = next(target.glob("*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    binary = next(path for path in target.rglob("cuobjdump") if path.is_file())
    binary.chmod(0o755)
    return binary


def sass_architectures(tool: Path, library: Path) -> dict[str, int]:
    """SASS architecture -> number of cubins in ``library``."""
    out = subprocess.run([str(tool), "--list-elf", str(library)], capture_output=True, text=True, check=False,
                         timeout=600).stdout
    counts: dict[str, int] = {}
    for arch in re.findall(r"\.(sm_\d+a?)\.cubin", out):
        counts[arch] = counts.get(arch, 0) + 1
    return counts


def kernels(tool: Path, library: Path, arch: str) -> set[str]:
    """Names of the global functions (kernels) that ``library`` has SASS for on ``arch``."""
    out = subprocess.run([str(tool), "-symbols", "-arch", arch, str(library)], capture_output=True, text=True,
                         check=False, timeout=900).stdout
    return {line.split()[-1] for line in out.splitlines() if line.startswith("FUNC") and " GLOBAL " in line}


def ampere_only(kernel: str) -> bool:
    """Kernels ONNX Runtime never runs on Turing: bf16 ones, and flash attention (``onnxruntime::flash``, sm_80+)."""
    return "bfloat16" in kernel or "bf16" in kernel.lower() or kernel.startswith("_ZN11onnxruntime5flash")


def check_turing_code(tool: Path, rootfs: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """sm_75 SASS in the CUDA provider (kernel by kernel), cuBLAS and cuDNN."""
    capi = rootfs / facts["capi"].lstrip("/")
    provider = capi / "libonnxruntime_providers_cuda.so"
    evidence: dict[str, Any] = {"libonnxruntime_providers_cuda.so": sass_architectures(tool, provider)}
    require(TURING in evidence["libonnxruntime_providers_cuda.so"], "the CUDA provider has no sm_75 SASS")
    turing, ampere = kernels(tool, provider, TURING), kernels(tool, provider, "sm_80")
    without = sorted(ampere - turing)
    evidence["kernels_sm_75"], evidence["kernels_sm_80"], evidence["kernels_without_sm_75"] = (
        len(turing), len(ampere), without)
    unexpected = [name for name in without if not ampere_only(name)]
    require(not unexpected, f"kernels without sm_75 SASS that Turing could be sent: {unexpected[:5]}")
    for pattern in ("libcublasLt.so.*", "libcudnn_engines_precompiled.so.*"):
        for library in sorted({path.resolve() for path in rootfs.glob(f"**/nvidia/**/{pattern}")}):
            archs = sass_architectures(tool, library)
            evidence[library.name] = archs
            require(TURING in archs, f"{library.name} has no sm_75 SASS: {sorted(archs)}")
    return evidence
