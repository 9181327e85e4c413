"""FLOP counts of SAM's graphs and this machine's matrix-multiply rates: the floors benchmarks compare to.

Rates are best-of-``repeats`` GFLOP/s of one square MxM @ MxM product (2*M^3 operations):
- ``sgemm``: numpy's float32 matmul (OpenBLAS), the f32 floor;
- ``openvino_f32`` / ``openvino_bf16`` / ``openvino_int8``: the same product compiled by OpenVINO's
  CPU plugin (the engine of the CPU tier's encoder) with inference precision f32 or bf16, and with
  both operands behind 256-level FakeQuantize nodes (how an NNCF int8 graph reaches the plugin);
- ``onnxruntime_u8s8``: ONNX Runtime ``MatMulInteger`` (uint8 x int8 -> int32), MLAS's quantised
  GEMM (the engine of the int8 decoder).

Each rate names the kernel that ran where the engine says: OpenVINO's runtime model gives each
node's ``primitiveType`` (e.g. ``brgemm_avx512_bf16``); ONNX Runtime does not report it: MLAS picks
its U8S8 kernel by CPUID feature bits (``platform.cpp``: AVX512-VNNI -> ``MlasGemmU8S8KernelAvx512Vnni``,
AMX-INT8 -> the AMX dispatch), so ``kernel`` there names what MLAS picks for the flags in /proc/cpuinfo.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

#: Encoder FLOPs at 1024x1024 (vit_t and tiny counted with torch.utils.flop_counter).
ENCODER_TFLOP = {"vit_b": 0.97, "vit_l": 3.0, "vit_h": 6.0, "vit_t": 0.0775, "tiny": 0.004}
#: The prompt encoder and mask decoder, one prompt (PyTorch's FLOP counter): the same graph in
#: every model type (``export.sam_models``), so one number.
DECODER_GFLOP_PER_PROMPT = 3.64


@dataclass(frozen=True)
class GemmRate:
    """One measured matrix-multiply rate and the kernel that delivered it."""

    gflops: float
    kernel: str
    precision: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def best_seconds(call: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` timed runs of ``call`` after one untimed warm-up run."""
    call()
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def sgemm_gflops(size: int, repeats: int = 3) -> float:
    """This machine's float32 matrix-multiply rate with numpy (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats) / 1e9


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is unreadable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def package_version(package: str) -> str:
    """An installed distribution's version, or "not installed"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def mlas_u8s8_kernel(flags: set[str]) -> str:
    """The U8S8 GEMM kernel MLAS dispatches to for these CPU flags (its platform.cpp order)."""
    if {"amx_tile", "amx_int8"} <= flags:
        return "MLAS AMX (amx_int8)"
    if {"avx512bw", "avx512dq", "avx512vl"} <= flags:
        return "MLAS Avx512Vnni (vpdpbusds)" if "avx512_vnni" in flags else "MLAS Avx512Core (no VNNI)"
    if "avx_vnni" in flags:
        return "MLAS AvxVnni"
    return "MLAS Avx2 (no VNNI)" if "avx2" in flags else "MLAS generic"


def _openvino_matmul(size: int, quantised: bool) -> Any:
    """An OpenVINO model y = a @ b for float32 a MxM (input) and a constant b MxM; with
    ``quantised``, both operands pass 256-level FakeQuantize nodes over [-4, 4] first."""
    import openvino as ov
    import openvino.opset13 as ops

    a = ops.parameter([size, size], np.float32, name="a")
    b: Any = ops.constant(np.random.default_rng(0).standard_normal((size, size)).astype(np.float32))
    x: Any = a
    if quantised:
        low, high = ops.constant(np.float32(-4.0)), ops.constant(np.float32(4.0))
        x = ops.fake_quantize(a, low, high, low, high, 256)
        b = ops.fake_quantize(b, low, high, low, high, 255)
    return ov.Model([ops.matmul(x, b, False, False)], [a])


def openvino_gemm(size: int, precision: str, repeats: int, threads: int) -> GemmRate:
    """OpenVINO's CPU matmul rate: ``precision`` f32 or bf16 (the inference precision hint), or
    int8 (FakeQuantize'd operands, f32 hint); ``kernel`` is the matmul node's primitiveType."""
    import openvino as ov

    model = _openvino_matmul(size, quantised=precision == "int8")
    hint = "f32" if precision == "int8" else precision
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                      "INFERENCE_NUM_THREADS": threads})
    kernels = [str(op.get_rt_info()["primitiveType"].astype(str)) for op in compiled.get_runtime_model().get_ordered_ops()
               if str(op.get_rt_info()["layerType"].astype(str)) in ("FullyConnected", "MatMul")]
    request = compiled.create_infer_request()
    feed = {0: np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)}
    seconds = best_seconds(lambda: request.infer(feed), repeats)
    return GemmRate(2 * size**3 / seconds / 1e9, ",".join(kernels) or "unknown", precision)


def onnxruntime_u8s8_gemm(size: int, repeats: int, threads: int) -> GemmRate:
    """ONNX Runtime's ``MatMulInteger`` rate: uint8 MxM (input) x int8 MxM (constant) -> int32."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-127, 128, (size, size), dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "u8s8",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (size, size), dtype=np.uint8)}
    seconds = best_seconds(lambda: session.run(None, feed), repeats)
    return GemmRate(2 * size**3 / seconds / 1e9, mlas_u8s8_kernel(cpu_flags()), "int8")


def gemm_floors(size: int, repeats: int, threads: int) -> dict[str, GemmRate]:
    """Every rate of the module docstring, measured now, one after the other."""
    rates = {"sgemm": GemmRate(sgemm_gflops(size, repeats), "numpy (OpenBLAS) sgemm", "f32")}
    for precision in ("f32", "bf16", "int8"):
        rates[f"openvino_{precision}"] = openvino_gemm(size, precision, repeats, threads)
    rates["onnxruntime_u8s8"] = onnxruntime_u8s8_gemm(size, repeats, threads)
    return rates
