"""Which backend (inference library) runs each graph on CPU: ONNX Runtime or OpenVINO.

"Engine" in this codebase is the ``SamEngine`` only; the setting keeps its public name.

On a GPU provider both graphs stay on ONNX Runtime (TensorRT or CUDA). On CPU,
``SAM_CPU_ENGINE`` chooses: ``onnxruntime`` or ``openvino`` for both graphs, or ``auto``,
which takes the faster backend per graph and CPU precision tier (``runtime.cpu_precision``)
as measured on our machines (``benchmarks/RESULTS.md``) when OpenVINO is installed:
OpenVINO for the image encoder in every tier; for the prompt decoder ONNX Runtime in the
f32 tier (the graphs that parity with PyTorch was first proven on; ``bench_latency.py``),
OpenVINO in the bf16 and int8 tiers, where one prompt takes 20-24 ms (29-31 ms without the
static-shape graph, ``runtime.openvino_runner.STATIC_DECODER_SHAPES``) against 52-57 ms on
ONNX Runtime (vit_t, 2-core Zen 4, quiet machine; ONNX Runtime's int8 decoder is no faster
than its fp32 one).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from runtime.cpu_precision import CpuPrecision
from runtime.env_values import choice, env_field
from runtime.providers import Role

BackendName = Literal["onnxruntime", "openvino"]
CpuBackendSetting = Literal["auto", "onnxruntime", "openvino"]

BACKENDS: tuple[BackendName, ...] = ("onnxruntime", "openvino")
#: ``auto``'s choice per CPU tier and graph when OpenVINO is installed (see the module docstring).
AUTO_CPU_BACKENDS: dict[CpuPrecision, dict[Role, BackendName]] = {
    "f32": {"encoder": "openvino", "decoder": "onnxruntime"},
    "bf16": {"encoder": "openvino", "decoder": "openvino"},
    "int8": {"encoder": "openvino", "decoder": "openvino"},
}


@dataclass(frozen=True)
class OpenVinoOptions:
    """OpenVINO CPU plugin options.

    The inference precision is the CPU tier's (``runtime.cpu_precision``, ``SAM_CPU_PRECISION``).
    ``cache_dir``: where OpenVINO keeps compiled models so a restart skips compilation
    (None: no cache). Threads come from ``CpuOptions.intra_op_threads`` (0: all cores).
    """

    cache_dir: str | None = env_field(None, "SAM_OPENVINO_CACHE_DIR", str,
                                      shown="none (`/tmp/sam-ov-cache` in the CPU image)",
                                      doc="OpenVINO keeps compiled graphs here so a restart skips compilation")


parse_cpu_backend: Callable[[str], CpuBackendSetting] = choice(*get_args(CpuBackendSetting))


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported (it is optional for the GPU image)."""
    return importlib.util.find_spec("openvino") is not None


def choose_cpu_backends(setting: CpuBackendSetting, openvino_installed: bool,
                        tier: CpuPrecision = "f32") -> dict[Role, BackendName]:
    """The backend per graph for an engine on CPU only, in CPU tier ``tier``.

    ``openvino`` without the package raises ``ValueError`` naming the fix; ``auto`` falls
    back to ONNX Runtime for every graph when OpenVINO is not installed. The encoder's
    backend is the same in every tier (the tier is chosen knowing it).
    """
    if setting == "onnxruntime":
        return {"encoder": "onnxruntime", "decoder": "onnxruntime"}
    if setting == "openvino":
        if not openvino_installed:
            raise ValueError("SAM_CPU_ENGINE=openvino but the openvino package is not installed "
                             "(pip install openvino, or use SAM_CPU_ENGINE=auto|onnxruntime)")
        return {"encoder": "openvino", "decoder": "openvino"}
    if not openvino_installed:
        return {"encoder": "onnxruntime", "decoder": "onnxruntime"}
    return dict(AUTO_CPU_BACKENDS[tier])
