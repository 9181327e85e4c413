"""OpenVINO graph runners for CPU: the same ONNX files, compiled by OpenVINO's CPU plugin.

``compile_graph`` reads the ONNX file (external data included) and compiles it with the
LATENCY performance hint (one stream using every configured core), the configured
precision and optional model cache. Each run uses its own infer request (creating one
costs about 0.05 ms), so concurrent decoder runs are safe; outputs are copied out of the
request. The ``openvino`` package is imported here only, so the GPU image need not carry it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runtime.cpu_engines import OpenVinoOptions
from runtime.errors import ModelLoadError
from runtime.manifest import ENCODER_INPUT, ENCODER_OUTPUT, Manifest
from runtime.providers import ProviderName, Role
from runtime.settings import RuntimeSettings
from runtime.tensors import EmbeddingValue, HostOrDevice, to_host

log = logging.getLogger(__name__)

ENGINE_NAME = "openvino"


def compile_config(options: OpenVinoOptions, threads: int) -> dict[str, Any]:
    """The CPU plugin configuration: LATENCY hint, precision, threads (0: all), cache."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if options.precision != "auto":
        config["INFERENCE_PRECISION_HINT"] = options.precision
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    if options.cache_dir:
        config["CACHE_DIR"] = options.cache_dir
    return config


def compile_graph(model_dir: Path, manifest: Manifest, role: Role, settings: RuntimeSettings) -> Any:
    """Read and compile one ONNX graph for the CPU; errors become ``ModelLoadError``."""
    path = Path(model_dir) / manifest.models[role].file
    options, threads = settings.openvino, settings.providers.cpu.intra_op_threads
    try:
        import openvino as ov
    except ImportError as exc:
        raise ModelLoadError("OpenVINO is selected but the openvino package is not installed") from exc
    core = ov.Core()
    try:
        # Given the path (not a read model), a CACHE_DIR hit skips reading the ONNX file too.
        compiled = core.compile_model(str(path), "CPU", compile_config(options, threads))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"OpenVINO cannot load {path}: {reason}") from exc
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    if options.precision == "bf16" and precision != "bf16":
        log.warning("%s: SAM_OPENVINO_PRECISION=bf16 asked, but this CPU has no bf16 support: running %s",
                    role, precision)
    log.info("%s compiled by OpenVINO %s for CPU (precision %s, %s threads)", role, ov.__version__.split("-")[0], precision,
             compiled.get_property("INFERENCE_NUM_THREADS"))
    return compiled


class OpenVinoEncoder:
    """The image encoder compiled by OpenVINO for CPU."""

    engine = ENGINE_NAME
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

    engine = ENGINE_NAME
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
