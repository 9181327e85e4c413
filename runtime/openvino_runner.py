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
from runtime.cpu_precision import CpuPrecision, openvino_has_bf16, tier_role
from runtime.errors import ModelLoadError
from runtime.manifest import ENCODER_INPUT, ENCODER_OUTPUT, Manifest
from runtime.providers import ProviderName, Role
from runtime.settings import RuntimeSettings
from runtime.tensors import EmbeddingValue, HostOrDevice, to_host

log = logging.getLogger(__name__)

BACKEND_NAME = "openvino"


def inference_precision(tier: CpuPrecision, bf16_cpu: bool = False) -> str:
    """OpenVINO's inference precision for a CPU tier's graphs: bf16 for ``bf16``; for ``int8``
    (whose quantised layers run int8 either way) bf16 for the layers NNCF left in float when
    ``bf16_cpu``, else f32; f32 for ``f32``. Measured on vit_t (2-core Zen 4, quiet machine,
    interleaved runs, medians): int8 with the rest in bf16 takes 267 ms against 301 ms for the
    encoder (f32 tier 640 ms) and 29.9 ms against 34.6 ms for a static-shape decoder run."""
    if tier == "bf16" or (tier == "int8" and bf16_cpu):
        return "bf16"
    return "f32"


def compile_config(options: OpenVinoOptions, threads: int, precision: str = "f32") -> dict[str, Any]:
    """The CPU plugin configuration: LATENCY hint, ``precision`` (``inference_precision``'s),
    threads (0: all), cache."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = threads
    if options.cache_dir:
        config["CACHE_DIR"] = options.cache_dir
    return config


#: (prompts, points) of the prompt feeds the decoder is also compiled for with static shapes:
#: one prompt of one click (or of one box) with SAM's padding point, what every per-click tap
#: decodes when prompts run one at a time (``SAM_CPU_DECODER_PROMPTS_PER_RUN=1``). Measured on
#: vit_t (2-core Zen 4, 15 interleaved runs, medians): 18-22 ms against 23-29 ms for the same
#: graph with dynamic shapes, in the bf16 and int8 tiers (f32: ``static_decoder_shapes``). Any
#: other shape runs the dynamic graph.
STATIC_DECODER_SHAPES: tuple[tuple[int, int], ...] = ((1, 2),)


def static_decoder_shapes(tier: CpuPrecision) -> tuple[tuple[int, int], ...]:
    """The static decoder shapes of a tier: none for f32, which stays the graph its parity was
    proven on (vit_b's static f32 graph moved one per-click IoU against PyTorch to 0.98993)."""
    return () if tier == "f32" else STATIC_DECODER_SHAPES


def compile_graph(model_dir: Path, manifest: Manifest, role: Role, settings: RuntimeSettings,
                  tier: CpuPrecision = "f32", static_shapes: tuple[tuple[int, int], ...] = ()) -> Any:
    """Read and compile ``role``'s graph of CPU tier ``tier`` (the int8 file for ``int8``);
    errors, and a precision the CPU plugin did not take, become ``ModelLoadError``.

    ``static_shapes`` (decoder only): also compile the graph for these (prompts, points) feed
    shapes; the answer is then ``{"dynamic": compiled, (B, N): compiled, ...}``.
    """
    path = Path(model_dir) / manifest.models[tier_role(manifest, role, tier)].file
    options, threads = settings.openvino, settings.providers.cpu.intra_op_threads
    try:
        import openvino as ov
    except ImportError as exc:
        raise ModelLoadError("OpenVINO is selected but the openvino package is not installed") from exc
    core = ov.Core()
    wanted = inference_precision(tier, openvino_has_bf16())
    config = compile_config(options, threads, wanted)
    # Given the path (not a read model), a CACHE_DIR hit skips reading the ONNX file too.
    compiled = _compiled(lambda: core.compile_model(str(path), "CPU", config), path, tier, wanted)
    log.info("%s compiled by OpenVINO %s for CPU (precision %s, %s threads)", role, ov.__version__.split("-")[0], wanted,
             compiled.get_property("INFERENCE_NUM_THREADS"))
    if not static_shapes:
        return compiled
    variants: dict[Any, Any] = {"dynamic": compiled}
    for shape in static_shapes:
        variants[shape] = _compiled(lambda: core.compile_model(_static_decoder(core.read_model(str(path)), *shape), "CPU",  # noqa: B023
                                                               config), path, tier, wanted)
    return variants


def _compiled(compile_model: Any, path: Path, tier: CpuPrecision, wanted: str) -> Any:
    """``compile_model()``'s answer, its failure or a precision other than ``wanted`` a ``ModelLoadError``."""
    try:
        compiled = compile_model()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"OpenVINO cannot load {path}: {reason}") from exc
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
    if precision != wanted:
        raise ModelLoadError(f"OpenVINO compiled {path} with {precision} inference, not the {tier} tier's {wanted}")
    return compiled


def _static_decoder(model: Any, prompts: int, points: int) -> Any:
    """The decoder ``ov.Model`` reshaped for B = ``prompts`` prompts of N = ``points`` points:
    point_coords Bx Nx2, point_labels BxN, mask_input Bx1xLxL, has_mask_input B (the embedding
    stays 1x256x64x64)."""
    shapes: dict[str, list[int]] = {}
    for port in model.inputs:
        name = port.get_any_name()
        if name == "image_embeddings":
            continue
        dims = [dim.get_length() if dim.is_static else 0 for dim in port.get_partial_shape()]
        dims[0] = prompts
        if name in ("point_coords", "point_labels"):
            dims[1] = points
        shapes[name] = dims
    model.reshape(shapes)
    return model


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
    """The prompt decoder compiled by OpenVINO for CPU: dynamic prompt and point counts, and the
    same graph with static shapes for the (prompts, points) of ``STATIC_DECODER_SHAPES``."""

    backend = BACKEND_NAME
    provider: ProviderName = "cpu"

    def __init__(self, compiled: Any) -> None:
        variants = compiled if isinstance(compiled, dict) else {"dynamic": compiled}
        self._compiled = variants["dynamic"]
        self._static = {shape: graph for shape, graph in variants.items() if shape != "dynamic"}

    def compiled_for(self, prompts: int, points: int) -> Any:
        """The compiled graph that runs B = ``prompts`` prompts of N = ``points`` points."""
        return self._static.get((prompts, points), self._compiled)

    def decode(self, embedding: EmbeddingValue, feeds: dict[str, NDArray[np.float32]]) -> tuple[NDArray[Any], NDArray[Any]]:
        """Embedding float32 1x256x64x64 and prompt feeds -> (low-res logits Bx4x256x256, scores Bx4)."""
        compiled = self.compiled_for(*feeds["point_coords"].shape[:2])
        request = compiled.create_infer_request()
        outputs = request.infer({"image_embeddings": np.asarray(to_host(embedding), np.float32), **feeds})
        return (np.array(outputs[compiled.output("low_res_masks")], copy=True),
                np.array(outputs[compiled.output("iou_predictions")], copy=True))
