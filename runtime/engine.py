"""The SAM engine: ONNX Runtime encoder and decoder sessions behind two calls.

``SamEngine.from_model_dir`` validates the manifest, picks providers and precision, opens
the sessions and checks what ONNX Runtime really uses; ``SamEngine(...)`` only stores
what it is given. Encoder runs are serialized (one at a time per device, so concurrent
new images do not thrash); decoder runs may proceed concurrently. On a GPU the embedding
stays on the device as an ``OrtValue`` and is bound to the decoder without a host copy.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from runtime.errors import ModelLoadError
from runtime.manifest import ENCODER_INPUT, ENCODER_OUTPUT, Manifest, load_manifest
from runtime.preprocess import PreparedImage, Preprocessor
from runtime.providers import (
    GPU_PROVIDERS,
    ProviderName,
    Role,
    check_active,
    provider_arguments,
    resolve_providers,
)
from runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

EMBEDDING_SHAPE = (1, 256, 64, 64)
LOW_RES = 256


@dataclass(frozen=True)
class Embedding:
    """An encoded image. ``value``: float32 1x256x64x64 numpy array, or a device ``OrtValue``."""

    value: Any
    nbytes: int
    orig_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]


@dataclass(frozen=True)
class Decoded:
    """Decoder output for B prompts: low-res logits float32 Bx4x256x256, scores float32 Bx4."""

    low_res_masks: NDArray[np.float32]
    iou_predictions: NDArray[np.float32]


def _session_options(settings: RuntimeSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = settings.providers.cpu.intra_op_threads
    options.inter_op_num_threads = settings.providers.cpu.inter_op_threads
    options.enable_cpu_mem_arena = settings.providers.cpu.memory_arena
    options.log_severity_level = 3
    if not settings.providers.cpu.spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _preload_gpu_libraries() -> None:
    """Load CUDA and cuDNN from the NVIDIA wheels (onnxruntime-gpu >= 1.21), so that no
    LD_LIBRARY_PATH is needed for them; a failure is logged and left to session creation."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - diagnostics only; session creation reports the real error
        log.warning("could not preload CUDA/cuDNN libraries: %s", exc)


def choose_model_file(manifest: Manifest, role: Role, provider: ProviderName, settings: RuntimeSettings) -> str:
    """Which graph a role runs: fp16 variants only on CUDA (TensorRT builds fp16 from fp32)."""
    wants_fp16 = settings.precision == "fp16" or (settings.precision == "auto" and provider == "cuda")
    fp16_role = f"{role}_fp16"
    if provider == "cuda" and wants_fp16 and fp16_role in manifest.models:
        return manifest.models[fp16_role].file
    if settings.precision == "fp16" and provider == "cpu":
        log.warning("SAM_PRECISION=fp16 is ignored on CPU: fp16 graphs run only on GPU providers")
    return manifest.models[role].file


class SamEngine:
    """Thread-safe encoder/decoder pair (see module docstring)."""

    def __init__(self, manifest: Manifest, encoder: ort.InferenceSession, decoder: ort.InferenceSession,
                 provider: ProviderName, device_id: int = 0) -> None:
        self.manifest = manifest
        self.provider = provider
        self.device_id = device_id
        self._encoder = encoder
        self._decoder = decoder
        self._encoder_lock = threading.Lock()
        self.preprocessor = Preprocessor(manifest.image_size, manifest.pixel_mean, manifest.pixel_std)

    @classmethod
    def from_model_dir(cls, model_dir: Path, settings: RuntimeSettings) -> SamEngine:
        """Validate ``model_dir`` and open its sessions with the configured providers."""
        manifest = load_manifest(Path(model_dir), verify_checksums=settings.verify_model_checksums)
        providers = resolve_providers(settings.providers, ort.get_available_providers())
        if any(name in GPU_PROVIDERS for name in providers):
            _preload_gpu_libraries()
        options = _session_options(settings)
        sessions: dict[Role, ort.InferenceSession] = {}
        active: dict[Role, ProviderName] = {}
        for role in ("encoder", "decoder"):
            path = Path(model_dir) / choose_model_file(manifest, role, providers[0], settings)
            try:
                session = ort.InferenceSession(str(path), options, providers=provider_arguments(settings.providers, providers, role))
            except Exception as exc:
                raise ModelLoadError(f"ONNX Runtime cannot load {path}: {exc}") from exc
            active[role] = check_active(role, session.get_providers(), providers, settings.providers)
            sessions[role] = session
        log.info("model %s from %s on %s (%s)", manifest.model_type, model_dir, active["encoder"],
                 manifest.weights.get("origin", "unknown weights"))
        return cls(manifest, sessions["encoder"], sessions["decoder"], active["encoder"],
                   settings.providers.cuda.device_id)

    @property
    def on_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS

    def prepare(self, image: Image.Image) -> PreparedImage:
        """RGB image -> encoder input (SamPredictor's resize, normalize, pad)."""
        return self.preprocessor.prepare(image)

    def encode(self, prepared: PreparedImage) -> Embedding:
        """Run the encoder (one at a time) on a prepared image."""
        with self._encoder_lock:
            if self.on_gpu:
                binding = self._encoder.io_binding()
                binding.bind_cpu_input(ENCODER_INPUT, prepared.tensor)
                binding.bind_output(ENCODER_OUTPUT, "cuda", self.device_id)
                self._encoder.run_with_iobinding(binding)
                value: Any = binding.get_outputs()[0]
            else:
                value = self._encoder.run([ENCODER_OUTPUT], {ENCODER_INPUT: prepared.tensor})[0]
        nbytes = int(np.prod(EMBEDDING_SHAPE)) * 4
        return Embedding(value, nbytes, prepared.orig_size_hw, prepared.input_size_hw)

    def decode(self, embedding: Any, point_coords: NDArray[np.float32], point_labels: NDArray[np.float32],
               mask_input: NDArray[np.float32] | None = None, has_mask_input: NDArray[np.float32] | None = None) -> Decoded:
        """Decode B prompts in one run.

        ``embedding``: the ``Embedding.value`` of the image. ``point_coords``: float32 BxNx2
        (x, y) in the resized frame; ``point_labels``: float32 BxN; ``mask_input``: float32
        Bx1x256x256 or None; ``has_mask_input``: float32 B or None.
        """
        batch = point_coords.shape[0]
        if mask_input is None:
            mask_input = np.zeros((batch, 1, LOW_RES, LOW_RES), np.float32)
            has_mask_input = np.zeros(batch, np.float32)
        elif has_mask_input is None:
            has_mask_input = np.ones(batch, np.float32)
        feeds = {
            "point_coords": np.ascontiguousarray(point_coords, np.float32),
            "point_labels": np.ascontiguousarray(point_labels, np.float32),
            "mask_input": np.ascontiguousarray(mask_input, np.float32),
            "has_mask_input": np.ascontiguousarray(has_mask_input, np.float32),
        }
        if isinstance(embedding, ort.OrtValue):
            binding = self._decoder.io_binding()
            binding.bind_ortvalue_input("image_embeddings", embedding)
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output("low_res_masks", "cpu")
            binding.bind_output("iou_predictions", "cpu")
            self._decoder.run_with_iobinding(binding)
            low_res, scores = binding.copy_outputs_to_cpu()
        else:
            low_res, scores = self._decoder.run(None, {"image_embeddings": embedding, **feeds})
        return Decoded(np.asarray(low_res, np.float32), np.asarray(scores, np.float32))

    def warm_up(self) -> None:
        """One encoder and one decoder run, so the first request pays no lazy initialization."""
        blank = Image.new("RGB", (64, 48))
        embedding = self.encode(self.prepare(blank))
        self.decode(embedding.value, np.array([[[10.0, 10.0], [0.0, 0.0]]], np.float32),
                    np.array([[1.0, -1.0]], np.float32))
