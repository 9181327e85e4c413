"""Write the CUDA EP kernel table of an onnxruntime-gpu wheel, from the wheel's own kernel registrations
(or, with ``--provider cpu``, the CPU EP table of an onnxruntime wheel: see the end of this docstring).

    python3 -m venv /tmp/ortgpu && /tmp/ortgpu/bin/pip install onnxruntime-gpu==1.26.0 \\
        nvidia-cuda-runtime-cu12==12.9.79 nvidia-cudnn-cu12==9.28.0.42 nvidia-cublas-cu12==12.9.3.13 \\
        nvidia-cufft-cu12==11.4.1.4 nvidia-curand-cu12==10.3.10.19
    /tmp/ortgpu/bin/python scripts/cuda_kernel_table.py --wheel onnxruntime_gpu-1.26.0-....whl \\
        --out tests/data/cuda_kernels_onnxruntime_gpu_1.26.0.json

Runs in a throwaway virtualenv holding onnxruntime-gpu and its CUDA/cuDNN wheels (it imports
only the standard library and onnxruntime) and needs a C compiler. ``get_all_opkernel_def()``
creates every execution provider to read its kernel registry; without a GPU the CUDA EP's
constructor fails on ``cudaSetDevice`` ("driver version is insufficient") and the TensorRT
EP's library cannot load without ``libnvinfer.so.10``. So the script compiles two stand-ins
and runs itself again with them: a preloaded library answering the CUDA runtime calls that
the constructor makes (device count, properties, memory info, synchronize: success, a 16 GiB
sm_75 device, nothing allocated), and empty ``libnvinfer.so.10``/``libnvonnxparser.so.10``
(TensorRT registers no kernels). The kernels listed are the wheel's own registrations: the
stand-ins only let the provider objects be constructed; no kernel runs.

The table (test data for ``export.kernel_coverage``): one row per CUDA kernel,
``[op, domain, since_version, end_version, {type_constraint: [types]}]``, domain ``""`` for ONNX,
end ``null`` for "to the latest", types as ONNX names ("float16", "int32", "bool").

``--provider cpu`` (no stand-ins, no compiler) writes the CPU EP's kernels of the onnxruntime
wheel installed in the running interpreter. onnxruntime-web's WASM backend is that CPU EP
compiled with Emscripten from the same release, so the table of onnxruntime 1.30.0 is the
operator list the browser decoder is checked against (issue 28):

    python3 -m venv /tmp/ort130 && /tmp/ort130/bin/pip install onnxruntime==1.30.0
    /tmp/ort130/bin/python scripts/cuda_kernel_table.py --provider cpu --wheel onnxruntime-1.30.0-....whl \\
        --out tests/data/cpu_kernels_onnxruntime_1.30.0.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
#: --provider: (execution provider, the wheel's package name).
PROVIDERS = {"cuda": (CUDA_EP, "onnxruntime-gpu"), "cpu": (CPU_EP, "onnxruntime")}
#: get_all_opkernel_def's end of an open version range (INT_MAX).
OPEN_END = 2**31 - 1


#: Set in the child run, which has the stand-ins loaded.
CHILD_FLAG = "SAM_KERNEL_TABLE_STANDINS"

#: The CUDA runtime calls the CUDA EP's constructor makes, answered without a device.
CUDA_RUNTIME_STANDIN = r"""
#include <string.h>
#include <driver_types.h>
cudaError_t cudaSetDevice(int d) { return cudaSuccess; }
cudaError_t cudaGetDevice(int *d) { *d = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties_v2(struct cudaDeviceProp *p, int d) {
  memset(p, 0, sizeof(*p)); strcpy(p->name, "stand-in (no device)"); p->major = 7; p->minor = 5;
  p->totalGlobalMem = 16ul << 30; p->multiProcessorCount = 40; p->maxThreadsPerBlock = 1024; p->warpSize = 32;
  return cudaSuccess; }
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int d) { *v = 0; return cudaSuccess; }
cudaError_t cudaDriverGetVersion(int *v) { *v = 12090; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *v) { *v = 12090; return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = 16ul << 30; *t = 16ul << 30; return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
cudaError_t cudaPeekAtLastError(void) { return cudaSuccess; }
cudaError_t cudaFree(void *p) { return cudaSuccess; }
"""
#: driver_types.h wants CUDA's compiler macros; for a host-only C build they are empty.
HOST_DEFINES = "\n".join(f"#define {macro}" for macro in (
    "__host__", "__device__", "__cudart_builtin__", "CUDARTAPI", "__dv(v)", "__device_builtin__",
    "__align__(n) __attribute__((aligned(n)))", "__builtin_align__(a) __align__(a)", "CUDART_CB",
    "__location__(a)", "__device_builtin_surface_type__", "__device_builtin_texture_type__")) + "\n"
#: The TensorRT EP's library links these; it registers no kernels, so empty ones do.
TENSORRT_STANDINS = {
    "libnvinfer.so.10": ("createInferBuilder_INTERNAL", "createInferRefitter_INTERNAL", "createInferRuntime_INTERNAL",
                         "getPluginRegistry"),
    "libnvonnxparser.so.10": ("createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL"),
}


def _compile(source: str, target: Path, include: list[Path]) -> None:
    source_path = target.with_suffix(".c")
    source_path.write_text(source)
    flags = [f"-I{path}" for path in include]
    subprocess.run(["cc", "-shared", "-fPIC", *flags, f"-Wl,-soname,{target.name}", "-o", str(target),
                    str(source_path)], check=True)


def build_standins(folder: Path, cuda_include: Path) -> dict[str, str]:
    """Compile the stand-ins into ``folder``; the environment that loads them."""
    (folder / "crt").mkdir(parents=True, exist_ok=True)
    (folder / "crt" / "host_defines.h").write_text(HOST_DEFINES)
    _compile(CUDA_RUNTIME_STANDIN, folder / "libcudart_standin.so", [folder, cuda_include])
    for library, symbols in TENSORRT_STANDINS.items():
        body = "".join(f"void *{name}(void) {{ return 0; }}\n" for name in symbols)
        if library == "libnvinfer.so.10":
            body += "int getInferLibVersion(void) { return 101401; }\n"
        _compile(body, folder / library, [])
    library_path = os.pathsep.join(filter(None, [str(folder), os.environ.get("LD_LIBRARY_PATH", "")]))
    return {CHILD_FLAG: "1", "LD_PRELOAD": str(folder / "libcudart_standin.so"), "LD_LIBRARY_PATH": library_path}


def _rerun_with_standins(argv: list[str]) -> int:
    import nvidia.cuda_runtime

    include = Path(next(iter(nvidia.cuda_runtime.__path__))) / "include"
    with tempfile.TemporaryDirectory(prefix="kernel-table-") as folder:
        env = {**os.environ, **build_standins(Path(folder), include)}
        return subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], env=env, check=False).returncode


def _type_name(text: str) -> str:
    """'tensor(float16)' -> 'float16'; 'seq(tensor(float))' stays as it is."""
    return text[len("tensor("):-1] if text.startswith("tensor(") and text.count("(") == 1 else text


def kernel_rows(definitions: list[Any], provider: str = CUDA_EP) -> list[list[Any]]:
    """``provider``'s kernels as sorted table rows (see the module docstring).

    Kernels registered once per type with one type constraint (``Pad`` float, ``Pad`` bool,
    ...) share a row: the union of one constraint's types is exact. Others stay one per row.
    """
    merged: dict[tuple[str, str, int, int | None, str], set[str]] = {}
    rows: list[list[Any]] = []
    for kernel in definitions:
        if kernel.provider != provider:
            continue
        start, end = kernel.version_range
        last = None if end >= OPEN_END else int(end)
        types = {name: sorted({_type_name(t) for t in allowed}) for name, allowed in kernel.type_constraints.items()}
        if len(types) == 1:
            (name, allowed), = types.items()
            merged.setdefault((kernel.op_name, kernel.domain, int(start), last, name), set()).update(allowed)
        else:
            rows.append([kernel.op_name, kernel.domain, int(start), last, dict(sorted(types.items()))])
    rows += [[op, domain, start, last, {name: sorted(allowed)}] for (op, domain, start, last, name), allowed in merged.items()]
    unique = {json.dumps(row): row for row in rows}
    return sorted(unique.values(), key=lambda row: (row[1], row[0], row[2], json.dumps(row[4])))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, required=True, help="the onnxruntime(-gpu) wheel file installed here")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="cuda")
    args = parser.parse_args(argv)
    provider, package = PROVIDERS[args.provider]
    if provider == CUDA_EP and os.environ.get(CHILD_FLAG) != "1":
        return _rerun_with_standins(list(sys.argv[1:] if argv is None else argv))
    import onnxruntime as ort
    from onnxruntime.capi import _pybind_state

    if provider == CUDA_EP:
        ort.preload_dlls()
    if provider not in ort.get_available_providers():
        print(f"{provider} is not in this onnxruntime build: {ort.get_available_providers()}", file=sys.stderr)
        return 1
    rows = kernel_rows(_pybind_state.get_all_opkernel_def(), provider)
    if not rows:
        print(f"no {provider} kernels registered: the provider library did not load", file=sys.stderr)
        return 1
    table = {"package": package, "version": ort.__version__, "wheel": args.wheel.name,
             "wheel_sha256": _sha256(args.wheel), "provider": provider,
             "source": "onnxruntime.capi._pybind_state.get_all_opkernel_def() (scripts/cuda_kernel_table.py)",
             "columns": ["op", "domain", "since_version", "end_version", "type_constraints"], "kernels": rows}
    text = json.dumps(table, separators=(",", ":"))
    args.out.write_text(text.replace(',"kernels":[', ',"kernels":[\n').replace("],[", "],\n[") + "\n")
    print(f"{len(rows)} kernel rows ({provider}) of {package} {ort.__version__} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
