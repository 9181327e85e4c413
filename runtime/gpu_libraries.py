"""Can an execution provider's native libraries load? Checked before ONNX Runtime is asked for it.

onnxruntime-gpu lists ``TensorrtExecutionProvider`` in ``get_available_providers()`` whether
or not TensorRT is installed. Asking for it without TensorRT makes session creation fail,
print a multi-line "EP Error ... Falling back" banner on stdout and retry on CUDA (measured
on an H100 with onnxruntime-gpu 1.31.1). So the TensorRT provider is only asked for when the
libraries it links can be loaded by name, exactly as the dynamic loader will look for them.

``libonnxruntime_providers_tensorrt.so`` (onnxruntime-gpu 1.26.0 for CUDA 12 and 1.31.1 for
CUDA 13) has ``DT_NEEDED`` entries ``libnvinfer.so.10`` and ``libnvonnxparser.so.10``
(TensorRT 10; `readelf -d`); ``make container-test-gpu`` checks this list against the
provider library in the GPU image. Its CUDA, cuBLAS and cuDNN dependencies are shared with
the CUDA provider and are loaded by ``runtime.ort_runner.preload_gpu_libraries`` first.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence

from runtime.providers import ORT_NAMES, ProviderConfig, ProviderName, wanted_providers

TENSORRT_LIBRARIES: tuple[str, ...] = ("libnvinfer.so.10", "libnvonnxparser.so.10")

Loader = Callable[[str], object]


def library_problem(names: Sequence[str], load: Loader = ctypes.CDLL) -> str | None:
    """None when every library in ``names`` loads (``dlopen`` by soname); else why the first one does not."""
    for name in names:
        try:
            load(name)
        except OSError as exc:
            return f"{name} cannot be loaded ({exc})"
    return None


def unloadable_providers(config: ProviderConfig, available: Sequence[str],
                         load: Loader = ctypes.CDLL) -> dict[ProviderName, str]:
    """Providers that ONNX Runtime lists in ``available`` but whose libraries cannot load, with the reason.

    Only TensorRT is probed, and only when the configuration would ask for it: ONNX Runtime
    itself reports the CUDA provider's missing libraries without failing the session.
    """
    if "tensorrt" not in wanted_providers(config) or ORT_NAMES["tensorrt"] not in available:
        return {}
    problem = library_problem(TENSORRT_LIBRARIES, load)
    return {} if problem is None else {"tensorrt": problem}
