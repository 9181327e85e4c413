"""The SAM engine: an encoder runner and a decoder runner behind two calls.

``SamEngine.from_model_dir`` validates the manifest, picks providers, the CPU engine per
graph (ONNX Runtime or OpenVINO, see ``runtime.cpu_engines``) and precision, opens the
graphs and checks what really runs; ``SamEngine(...)`` only stores what it is given.
Encoder runs are serialized (one at a time per device, so concurrent new images do not
thrash); decoder runs may proceed concurrently. On a GPU the embedding stays on the
device as an ``OrtValue`` and is bound to the decoder without a host copy.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from runtime import gpu_libraries, openvino_runner, ort_runner
from runtime.cpu_engines import EngineName, choose_cpu_engines, openvino_available
from runtime.errors import ModelLoadError
from runtime.manifest import Manifest, load_manifest
from runtime.preprocess import PreparedImage, Preprocessor
from runtime.providers import GPU_PROVIDERS, ORT_NAMES, ProviderName, Role, resolve_providers, wanted_providers
from runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

EMBEDDING_SHAPE = (1, 256, 64, 64)
LOW_RES = 256


class EncoderRunner(Protocol):
    """Runs the image encoder: float32 1x3x1024x1024 -> embedding 1x256x64x64."""

    engine: str
    provider: ProviderName

    def encode(self, tensor: NDArray[np.float32]) -> Any: ...


class DecoderRunner(Protocol):
    """Runs the prompt decoder: an embedding and B prompt feeds -> logits Bx4x256x256, scores Bx4."""

    engine: str
    provider: ProviderName

    def decode(self, embedding: Any, feeds: dict[str, NDArray[np.float32]]) -> tuple[NDArray[Any], NDArray[Any]]: ...


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


def choose_engines(settings: RuntimeSettings, providers: tuple[ProviderName, ...]) -> dict[Role, EngineName]:
    """ONNX Runtime for both graphs on a GPU provider; otherwise ``SAM_CPU_ENGINE``'s choice."""
    if providers[0] in GPU_PROVIDERS:
        return {"encoder": "onnxruntime", "decoder": "onnxruntime"}
    try:
        return choose_cpu_engines(settings.cpu_engine, openvino_available())
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


class SamEngine:
    """Thread-safe encoder/decoder pair (see module docstring)."""

    def __init__(self, manifest: Manifest, encoder: EncoderRunner, decoder: DecoderRunner) -> None:
        self.manifest = manifest
        self.encoder = encoder
        self.decoder = decoder
        self._encoder_lock = threading.Lock()
        self.preprocessor = Preprocessor(manifest.image_size, manifest.pixel_mean, manifest.pixel_std)

    @classmethod
    def from_model_dir(cls, model_dir: Path, settings: RuntimeSettings) -> SamEngine:
        """Validate ``model_dir`` and open both graphs with the configured providers and engines."""
        model_dir = Path(model_dir)
        manifest = load_manifest(model_dir, verify_checksums=settings.verify_model_checksums)
        available = ort.get_available_providers()
        if any(name in GPU_PROVIDERS and ORT_NAMES[name] in available for name in wanted_providers(settings.providers)):
            ort_runner.preload_gpu_libraries()
        unloadable = gpu_libraries.unloadable_providers(settings.providers, available)
        providers = resolve_providers(settings.providers, available, unloadable)
        engines = choose_engines(settings, providers)
        encoder: EncoderRunner
        decoder: DecoderRunner
        if engines["encoder"] == "openvino":
            encoder = openvino_runner.OpenVinoEncoder(openvino_runner.compile_graph(model_dir, manifest, "encoder", settings))
        else:
            session, active = ort_runner.open_session(model_dir, manifest, "encoder", providers, settings)
            encoder = ort_runner.OrtEncoder(session, active, settings.providers.cuda.device_id)
        if engines["decoder"] == "openvino":
            decoder = openvino_runner.OpenVinoDecoder(openvino_runner.compile_graph(model_dir, manifest, "decoder", settings))
        else:
            decoder = ort_runner.OrtDecoder(*ort_runner.open_session(model_dir, manifest, "decoder", providers, settings))
        log.info("model %s from %s: encoder on %s/%s, decoder on %s/%s (%s)", manifest.model_type, model_dir,
                 encoder.engine, encoder.provider, decoder.engine, decoder.provider,
                 manifest.weights.get("origin", "unknown weights"))
        return cls(manifest, encoder, decoder)

    @property
    def provider(self) -> ProviderName:
        """The device class the encoder runs on: tensorrt, cuda or cpu."""
        return self.encoder.provider

    @property
    def engines(self) -> dict[str, str]:
        """The engine running each graph, e.g. {"encoder": "openvino", "decoder": "onnxruntime"}."""
        return {"encoder": self.encoder.engine, "decoder": self.decoder.engine}

    @property
    def on_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS

    def prepare(self, image: Image.Image) -> PreparedImage:
        """RGB image -> encoder input (SamPredictor's resize, normalize, pad)."""
        return self.preprocessor.prepare(image)

    def encode(self, prepared: PreparedImage) -> Embedding:
        """Run the encoder (one at a time) on a prepared image."""
        with self._encoder_lock:
            value = self.encoder.encode(prepared.tensor)
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
        low_res, scores = self.decoder.decode(embedding, feeds)
        return Decoded(np.asarray(low_res, np.float32), np.asarray(scores, np.float32))

    def warm_up(self) -> None:
        """One encoder and one decoder run, so the first request pays no lazy initialization."""
        blank = Image.new("RGB", (64, 48))
        embedding = self.encode(self.prepare(blank))
        self.decode(embedding.value, np.array([[[10.0, 10.0], [0.0, 0.0]]], np.float32),
                    np.array([[1.0, -1.0]], np.float32))
