"""ONNX Runtime graph runners: session options, model file choice, and the IO-bound GPU path.

``OrtEncoder`` returns the 1x256x64x64 float32 embedding as a numpy array on CPU, or as a
CUDA ``OrtValue`` on a GPU provider (IO binding: the embedding never leaves the device).
``OrtDecoder`` binds such an ``OrtValue`` without a host copy. Sessions are thread-safe
for ``run``; the engine serializes encoder runs itself.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from runtime.cpu_precision import CpuPrecision, tier_role
from runtime.errors import ModelLoadError
from runtime.manifest import ENCODER_INPUT, ENCODER_OUTPUT, PREPOST_ROLES, Manifest
from runtime.providers import GPU_PROVIDERS, ProviderName, Role, check_active, provider_arguments
from runtime.settings import RuntimeSettings
from runtime.tensors import EmbeddingValue, HostOrDevice, LogitsValue

log = logging.getLogger(__name__)

ENGINE_NAME = "onnxruntime"


def session_options(settings: RuntimeSettings, role: Role) -> ort.SessionOptions:
    """Full graph optimization, the configured CPU threads, arena and spinning.

    The encoder's pool never spins: its runs take about a second or more, and pool threads
    busy-waiting after one steal the cores from the decoder run that follows (measured on
    vit_t, 2 cores: the decoder right after an encode took 84-106 ms with a spinning
    encoder pool, 45-49 ms without; the encoder's own time did not change).
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = settings.providers.cpu.intra_op_threads
    options.inter_op_num_threads = settings.providers.cpu.inter_op_threads
    options.enable_cpu_mem_arena = settings.providers.cpu.memory_arena
    options.log_severity_level = 3
    if role == "encoder" or not settings.providers.cpu.spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


@contextlib.contextmanager
def stdout_to_log(what: str) -> Iterator[None]:
    """Turn whatever ONNX Runtime's Python layer ``print()``s inside the block into one warning line.

    It prints its "EP Error ... Falling back to ..." banner and ``preload_dlls`` failures to
    stdout, where our one-JSON-object-per-line logs go. Swaps ``sys.stdout`` for the block:
    use it only around start-up calls (session creation, library preloading).
    """
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        text = " ".join(printed.getvalue().replace("*", " ").split())
        if text:
            log.warning("%s: ONNX Runtime printed: %s", what, text)


def preload_gpu_libraries() -> None:
    """Load CUDA and cuDNN from the NVIDIA wheels (onnxruntime-gpu >= 1.21), so that no
    LD_LIBRARY_PATH is needed for them; a failure is logged and left to session creation."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        with stdout_to_log("loading CUDA/cuDNN"):
            preload()
    except Exception as exc:  # noqa: BLE001 - diagnostics only; session creation reports the real error
        log.warning("could not preload CUDA/cuDNN libraries: %s", exc)


def choose_model_file(manifest: Manifest, role: Role, provider: ProviderName, settings: RuntimeSettings,
                      tier: CpuPrecision = "f32") -> str:
    """Which graph a role runs: fp16 variants only on CUDA (TensorRT builds fp16 from fp32); on CPU
    the graph of CPU tier ``tier`` (``runtime.cpu_precision``: the int8 file for ``int8``)."""
    wants_fp16 = settings.precision == "fp16" or (settings.precision == "auto" and provider == "cuda")
    fp16_role = f"{role}_fp16"
    if provider == "cuda" and wants_fp16 and fp16_role in manifest.models:
        return manifest.models[fp16_role].file
    if settings.precision == "fp16" and provider == "cpu":
        log.warning("SAM_PRECISION=fp16 is ignored on CPU: fp16 graphs run only on GPU providers")
    if provider == "cpu":
        return manifest.models[tier_role(manifest, role, tier)].file
    return manifest.models[role].file


def open_session(model_dir: Path, manifest: Manifest, role: Role, providers: tuple[ProviderName, ...],
                 settings: RuntimeSettings, tier: CpuPrecision = "f32") -> tuple[ort.InferenceSession, ProviderName]:
    """One ONNX Runtime session for ``role`` (on CPU: CPU tier ``tier``'s file) and the provider it really runs on.

    The pre/post-processing graphs never go to TensorRT (it rejects antialiased ``Resize``
    and shape inputs): they run on the CUDA EP beside a TensorRT encoder and decoder.
    """
    if role in PREPOST_ROLES:
        providers = tuple(name for name in providers if name != "tensorrt") or ("cpu",)
        path = Path(model_dir) / manifest.models[role].file
    else:
        path = Path(model_dir) / choose_model_file(manifest, role, providers[0], settings, tier)
    try:
        with stdout_to_log(f"{role} session"):
            session = ort.InferenceSession(str(path), session_options(settings, role),
                                           providers=provider_arguments(settings.providers, providers, role))
    except Exception as exc:
        raise ModelLoadError(f"ONNX Runtime cannot load {path}: {exc}") from exc
    return session, check_active(role, session.get_providers(), providers, settings.providers)


class OrtEncoder:
    """The image encoder on an ONNX Runtime session (CPU, CUDA or TensorRT)."""

    engine = ENGINE_NAME

    def __init__(self, session: ort.InferenceSession, provider: ProviderName, device_id: int = 0) -> None:
        self._session = session
        self.provider = provider
        self.device_id = device_id

    def encode(self, tensor: HostOrDevice) -> EmbeddingValue:
        """float32 1x3x1024x1024 (numpy or a device ``OrtValue``) -> embedding 1x256x64x64
        (numpy on CPU, a CUDA ``OrtValue`` on a GPU provider)."""
        if self.provider in GPU_PROVIDERS:
            binding = self._session.io_binding()
            if isinstance(tensor, ort.OrtValue):
                binding.bind_ortvalue_input(ENCODER_INPUT, tensor)
            else:
                binding.bind_cpu_input(ENCODER_INPUT, tensor)
            binding.bind_output(ENCODER_OUTPUT, "cuda", self.device_id)
            self._session.run_with_iobinding(binding)
            return binding.get_outputs()[0]
        if isinstance(tensor, ort.OrtValue):
            tensor = tensor.numpy()
        return self._session.run([ENCODER_OUTPUT], {ENCODER_INPUT: tensor})[0]


class OrtDecoder:
    """The prompt decoder on an ONNX Runtime session.

    ``logits_on_device``: with a device embedding, leave the low-res logits on the device (an
    ``OrtValue`` for the post-processing graph); only the Bx4 scores come to the host.
    """

    engine = ENGINE_NAME

    def __init__(self, session: ort.InferenceSession, provider: ProviderName, device_id: int = 0,
                 logits_on_device: bool = False, cpu_arena: bool = True) -> None:
        self._session = session
        self.provider = provider
        self.device_id = device_id
        self.logits_on_device = logits_on_device
        # On the host, hand the arena's memory back after each run: its size follows the largest
        # batch ever run (64 prompts kept 3.9 GB). Measured on 2 cores (CPU time, tiny/SAM decoder):
        # 1 prompt 70 vs 66-73 ms, 5 prompts 395 vs 364 ms; after 64 prompts in runs of 8, RSS
        # +43 MB instead of +434 MB.
        self._run_options = ort.RunOptions()
        if provider == "cpu" and cpu_arena:
            self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def decode(self, embedding: EmbeddingValue, feeds: dict[str, NDArray[np.float32]]) -> tuple[LogitsValue, NDArray[Any]]:
        """Embedding (numpy or ``OrtValue``) and prompt feeds -> (low-res logits Bx4x256x256, scores Bx4)."""
        if isinstance(embedding, ort.OrtValue):
            binding = self._session.io_binding()
            binding.bind_ortvalue_input("image_embeddings", embedding)
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            if self.logits_on_device:
                binding.bind_output("low_res_masks", "cuda", self.device_id)
            else:
                binding.bind_output("low_res_masks", "cpu")
            binding.bind_output("iou_predictions", "cpu")
            self._session.run_with_iobinding(binding)
            low_res, scores = binding.get_outputs()
            return (low_res if self.logits_on_device else low_res.numpy()), scores.numpy()
        low_res, scores = self._session.run(None, {"image_embeddings": embedding, **feeds}, self._run_options)
        return low_res, scores
