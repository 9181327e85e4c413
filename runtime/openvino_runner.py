"""OpenVINO graph runners for CPU: the same ONNX files, compiled by OpenVINO's CPU plugin.

``compile_graph`` reads the ONNX file (external data included) and compiles it with the
LATENCY performance hint (one stream using every configured core), the CPU tier's
inference precision (``runtime.cpu_precision``) and optional model cache. Each run uses its own infer request (creating one
costs about 0.05 ms), so concurrent decoder runs are safe; outputs are copied out of the
request. The ``openvino`` package is imported here only, so the GPU image need not carry it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runtime.cpu_backends import OpenVinoOptions
from runtime.cpu_precision import CpuPrecision, tier_role
from runtime.errors import ModelLoadError
from runtime.manifest import ENCODER_INPUT, ENCODER_OUTPUT, Manifest
from runtime.providers import ProviderName, Role
from runtime.settings import RuntimeSettings
from runtime.tensors import EmbeddingValue, HostOrDevice, to_host

log = logging.getLogger(__name__)

BACKEND_NAME = "openvino"


def inference_precision(tier: CpuPrecision) -> str:
    """OpenVINO's inference precision for a CPU tier: bf16 for ``bf16``, f32 otherwise (an int8
    graph's quantised layers run int8 either way; the rest stays f32)."""
    return "bf16" if tier == "bf16" else "f32"


def compile_config(options: OpenVinoOptions, threads: int, tier: CpuPrecision = "f32") -> dict[str, Any]:
    """The CPU plugin configuration: LATENCY hint, the tier's precision, threads (0: all), cache."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": inference_precision(tier)}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    if options.cache_dir:
        config["CACHE_DIR"] = options.cache_dir
    return config


def compile_graph(model_dir: Path, manifest: Manifest, role: Role, settings: RuntimeSettings,
                  tier: CpuPrecision = "f32") -> Any:
    """Read and compile ``role``'s graph of CPU tier ``tier`` (the int8 file for ``int8``);
    errors, and a precision the CPU plugin did not take, become ``ModelLoadError``."""
    path = Path(model_dir) / manifest.models[tier_role(manifest, role, tier)].file
    options, threads = settings.openvino, settings.providers.cpu.intra_op_threads
    try:
        import openvino as ov
    except ImportError as exc:
        raise ModelLoadError("OpenVINO is selected but the openvino package is not installed") from exc
    core = ov.Core()
    try:
        # Given the path (not a read model), a CACHE_DIR hit skips reading the ONNX file too.
        compiled = core.compile_model(str(path), "CPU", compile_config(options, threads, tier))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"OpenVINO cannot load {path}: {reason}") from exc
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    if precision != inference_precision(tier):
        raise ModelLoadError(f"OpenVINO compiled {path} with {precision} inference, not the {tier} tier's "
                             f"{inference_precision(tier)}")
    log.info("%s compiled by OpenVINO %s for CPU (precision %s, %s threads)", role, ov.__version__.split("-")[0], precision,
             compiled.get_property("INFERENCE_NUM_THREADS"))
    return compiled


class OpenVinoEncoder:
    """The image encoder compiled by OpenVINO for CPU."""

    backend = BACKEND_NAME
    provider: ProviderName = "cpu"

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._output = compiled.output(ENCODER_OUTPUT)

    def encode(self, tensor: HostOrDevice) -> NDArray[np.float32]:
        """float32 1x3x1024x1024 -> embedding float32 1x256x64x64 (a numpy copy)."""
        request = self._compiled.create_infer_request()
        outputs = request.infer({ENCODER_INPUT: to_host(tensor)})
        return np.array(outputs[self._output], np.float32, copy=True)


class OpenVinoDecoder:
    """The prompt decoder compiled by OpenVINO for CPU (dynamic prompt and point counts)."""

    backend = BACKEND_NAME
    provider: ProviderName = "cpu"

    def __init__(self, compiled: Any) -> None:
        self._compiled = compiled
        self._low_res = compiled.output("low_res_masks")
        self._scores = compiled.output("iou_predictions")

    def decode(self, embedding: EmbeddingValue, feeds: dict[str, NDArray[np.float32]]) -> tuple[NDArray[Any], NDArray[Any]]:
        """Embedding float32 1x256x64x64 and prompt feeds -> (low-res logits Bx4x256x256, scores Bx4)."""
        request = self._compiled.create_infer_request()
        outputs = request.infer({"image_embeddings": np.asarray(to_host(embedding), np.float32), **feeds})
        return np.array(outputs[self._low_res], copy=True), np.array(outputs[self._scores], copy=True)
