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
from runtime.manifest import AROUND_MODEL_ROLES, ENCODER_INPUT, ENCODER_OUTPUT, Manifest
from runtime.providers import GPU_PROVIDERS, ProviderName, Role, check_active, provider_arguments
from runtime.settings import RuntimeSettings
from runtime.tensors import EmbeddingValue, HostOrDevice, LogitsValue

log = logging.getLogger(__name__)

BACKEND_NAME = "onnxruntime"


def session_options(settings: RuntimeSettings, role: Role, on_gpu: bool = False) -> ort.SessionOptions:
    """Full graph optimization, the configured CPU threads, arena and spinning.

    A GPU session's pool never spins either: its CPU work is a few shape nodes, and spinning
    threads would only burn the instance's cores (4 vCPUs on ml.g4dn.xlarge) between runs.

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
    if role == "encoder" or on_gpu or not settings.providers.cpu.spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if settings.ort_profile_dir is not None:
        Path(settings.ort_profile_dir).mkdir(parents=True, exist_ok=True)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(settings.ort_profile_dir) / role)
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
    the graph of CPU tier ``tier`` (``runtime.cpu_precision``: the int8 file for ``int8``).

    On CUDA, ``auto`` runs the fp16 graph when the export has one and warns when it has not
    (fp32 on a T4 is several times slower: export with ``--fp16``); ``fp16`` without one is
    a ``ModelLoadError``, so a GPU deployment that asks for fp16 never runs fp32 silently.
    """
    wants_fp16 = settings.precision == "fp16" or (settings.precision == "auto" and provider == "cuda")
    fp16_role = f"{role}_fp16"
    if provider == "cuda" and wants_fp16:
        if fp16_role in manifest.models:
            return manifest.models[fp16_role].file
        if settings.precision == "fp16":
            raise ModelLoadError(f"SAM_PRECISION=fp16 but the export has no {fp16_role} graph: "
                                 "export with --fp16, or set SAM_PRECISION=fp32")
        log.warning("the export has no %s graph: the %s runs fp32 on CUDA (several times slower than fp16 on a T4); "
                    "export with --fp16", fp16_role, role)
    if settings.precision == "fp16" and provider == "cpu":
        log.warning("SAM_PRECISION=fp16 is ignored on CPU: fp16 graphs run only on GPU providers")
    if provider == "cpu":
        return manifest.models[tier_role(manifest, role, tier)].file
    return manifest.models[role].file


def graph_precision(manifest: Manifest, file: str, provider: ProviderName, settings: RuntimeSettings) -> str:
    """What precision a graph file runs at on ``provider``, for the start-up log."""
    precision = next((entry.precision for entry in manifest.models.values() if entry.file == file), "fp32")
    if provider == "tensorrt":
        return f"{precision} graph, TensorRT {'fp16' if settings.providers.tensorrt.fp16 else 'fp32'} engine"
    return precision


def prepost_providers(providers: tuple[ProviderName, ...]) -> tuple[ProviderName, ...]:
    """The providers the pre/post graphs run on: TensorRT's place is taken by the CUDA EP
    (never dropped to the CPU), keeping the order and no duplicates."""
    planned: list[ProviderName] = []
    for name in providers:
        name = "cuda" if name == "tensorrt" else name
        if name not in planned:
            planned.append(name)
    return tuple(planned) or ("cpu",)


def open_session(model_dir: Path, manifest: Manifest, role: Role, providers: tuple[ProviderName, ...],
                 settings: RuntimeSettings, tier: CpuPrecision = "f32",
                 arena_limit_bytes: int | None = None) -> tuple[ort.InferenceSession, ProviderName]:
    """One ONNX Runtime session for ``role`` (on CPU: CPU tier ``tier``'s file) and the provider it really runs on.
    ``arena_limit_bytes``: the cap of its CUDA arena (``runtime.device_memory.arena_limits``), if any.

    The pre/post-processing graphs never go to TensorRT (it rejects antialiased ``Resize``
    and shape inputs): they run on the CUDA EP beside a TensorRT encoder and decoder.
    """
    if role in AROUND_MODEL_ROLES:
        providers = prepost_providers(providers)
        path = Path(model_dir) / manifest.models[role].file
    else:
        path = Path(model_dir) / choose_model_file(manifest, role, providers[0], settings, tier)
    try:
        with stdout_to_log(f"{role} session"):
            options = session_options(settings, role, on_gpu=providers[0] in GPU_PROVIDERS)
            session = ort.InferenceSession(str(path), options,
                                           providers=provider_arguments(settings.providers, providers, role,
                                                                        arena_limit_bytes))
    except Exception as exc:
        raise ModelLoadError(f"ONNX Runtime cannot load {path}: {exc}") from exc
    active = check_active(role, session.get_providers(), providers, settings.providers)
    if role not in AROUND_MODEL_ROLES:
        log.info("%s runs %s (%s) on %s", role, path.name, graph_precision(manifest, path.name, active, settings), active)
    return session, active


class OrtEncoder:
    """The image encoder on an ONNX Runtime session (CPU, CUDA or TensorRT)."""

    backend = BACKEND_NAME

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


#: Prompt counts whose all-zero ``mask_input`` (Bx1x256x256 float32, 256 KiB a prompt) stays on
#: the device between requests (at most 1+2+...+16 prompts: 34 MiB).
MAX_CACHED_ZERO_MASK_PROMPTS = 16


class OrtDecoder:
    """The prompt decoder on an ONNX Runtime session.

    ``logits_on_device``: with a device embedding, leave the low-res logits on the device (an
    ``OrtValue`` for the post-processing graph); only the Bx4 scores come to the host. An all-zero
    ``mask_input`` (a request without a previous mask) is bound from a copy kept on the device
    instead of being uploaded with every request.
    """

    backend = BACKEND_NAME

    def __init__(self, session: ort.InferenceSession, provider: ProviderName, device_id: int = 0,
                 logits_on_device: bool = False, cpu_arena: bool = True) -> None:
        self._session = session
        self.provider = provider
        self.device_id = device_id
        self.logits_on_device = logits_on_device
        self._zero_masks: dict[tuple[int, ...], ort.OrtValue] = {}
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
                zeros = self._zero_mask(value) if name == "mask_input" else None
                if zeros is not None:
                    binding.bind_ortvalue_input(name, zeros)
                else:
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

    def _zero_mask(self, mask_input: NDArray[np.float32]) -> ort.OrtValue | None:
        """The device copy of an all-zero ``mask_input`` of this shape (None: not all zero, or too many prompts)."""
        if mask_input.shape[0] > MAX_CACHED_ZERO_MASK_PROMPTS or mask_input.any():
            return None
        cached = self._zero_masks.get(mask_input.shape)
        if cached is None:
            device = "cuda" if self.provider in GPU_PROVIDERS else "cpu"
            cached = ort.OrtValue.ortvalue_from_numpy(np.zeros(mask_input.shape, np.float32), device, self.device_id)
            self._zero_masks[mask_input.shape] = cached
        return cached
