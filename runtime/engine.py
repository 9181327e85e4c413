"""The SAM engine: four runners behind small protocols, one request path for CPU and GPU.

- images (``runtime.preprocessors.ImagePreprocessor``): upload -> decoded image -> encoder input;
- encoder (``EncoderRunner``): encoder input -> image embedding;
- decoder (``DecoderRunner``): embedding + B prompts -> low-res logits and scores;
- renderer (``runtime.render.MaskRenderer``): logits -> full-size masks, union, areas, boxes.

On a GPU provider every runner is ONNX Runtime on the device: the encoder input, the
embedding and the logits stay there as ``OrtValue``s (IO binding), and the request's one
device-to-host copy is the renderer's bit-packed masks. On CPU the faster implementation per
graph and per stage runs (``runtime.cpu_backends``, ``runtime.prepost_choice``).

``SamEngine.from_model_dir`` validates the manifest, picks providers, backends and
implementations, opens the graphs and checks what really runs; ``SamEngine(...)`` only
stores what it is given. Shapes are read from the manifest, and ``decode`` checks its feeds
at the boundary (as ``SamPredictor`` does) instead of failing inside ONNX Runtime. Encoder
runs are serialized (one at a time per device); the other runners may run concurrently.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from runtime import gpu_setup, ort_runner
from runtime.cpu_backends import BackendName, choose_cpu_backends, openvino_available
from runtime.cpu_precision import TIERS_KEY, CpuPrecision, CpuSupport, choose_cpu_precision, openvino_has_bf16
from runtime.cutout_resize import OrtCutoutResizer
from runtime.device_memory import DeviceMemoryPlan, out_of_memory_is_overload
from runtime.errors import InvalidPoints, ModelLoadError
from runtime.graph_loading import GraphOpener, checked_prepost, usable_providers
from runtime.image_files import ImageHeader, ImageLimits
from runtime.manifest import Manifest, load_manifest
from runtime.preprocessors import ImagePreprocessor, LoadedImage, PillowPreprocessor
from runtime.providers import GPU_PROVIDERS, ProviderName, Role
from runtime.render import MaskRenderer, NumpyMaskRenderer, RenderedMasks
from runtime.sam_preprocessing import PreparedImage, Preprocessor
from runtime.settings import RuntimeSettings
from runtime.tensors import EmbeddingValue, HostOrDevice, LogitsValue, shape_of, to_host

log = logging.getLogger(__name__)

#: SAM's point labels: -1 padding, 0 background, 1 foreground, 2/3 box corners.
POINT_LABELS = (-1.0, 0.0, 1.0, 2.0, 3.0)


class EncoderRunner(Protocol):
    """Runs the image encoder: float32 1x3xSxS (host or device) -> embedding 1x256x64x64."""

    backend: str
    provider: ProviderName

    def encode(self, tensor: HostOrDevice) -> EmbeddingValue: ...


class DecoderRunner(Protocol):
    """Runs the prompt decoder: an embedding and B prompt feeds -> logits BxTxLxL, scores float32 BxT (host)."""

    backend: str
    provider: ProviderName

    def decode(self, embedding: EmbeddingValue, feeds: dict[str, NDArray[np.float32]]) -> tuple[LogitsValue, NDArray[Any]]: ...


@dataclass(frozen=True)
class Embedding:
    """An encoded image. ``value``: float32 1x256x64x64, numpy on CPU or a device ``OrtValue``."""

    value: EmbeddingValue
    nbytes: int
    orig_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]


@dataclass(frozen=True)
class Decoded:
    """Decoder output for B prompts: low-res logits float32 BxTxLxL (host or device), scores float32 BxT (host)."""

    low_res_masks: LogitsValue
    iou_predictions: NDArray[np.float32]


def choose_backends(settings: RuntimeSettings, providers: tuple[ProviderName, ...],
                    tier: CpuPrecision = "f32") -> dict[Role, BackendName]:
    """ONNX Runtime for both graphs on a GPU provider; otherwise ``SAM_CPU_ENGINE``'s choice for
    CPU tier ``tier`` (the encoder's backend does not depend on the tier)."""
    if providers[0] in GPU_PROVIDERS:
        return {"encoder": "onnxruntime", "decoder": "onnxruntime"}
    try:
        return choose_cpu_backends(settings.cpu_engine, openvino_available(), tier)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def choose_precision(settings: RuntimeSettings, manifest: Manifest, backends: dict[Role, BackendName],
                     on_gpu: bool) -> CpuPrecision:
    """The CPU tier that runs (``runtime.cpu_precision``); f32 on a GPU provider, whose graphs
    ``SAM_PRECISION`` chooses. A tier this host or model cannot run is a ``ModelLoadError``."""
    if on_gpu:
        return "f32"
    openvino_encoder = backends["encoder"] == "openvino"
    support = CpuSupport(bf16_cpu=openvino_encoder and openvino_has_bf16(), openvino_encoder=openvino_encoder,
                         int8_encoder="encoder_int8" in manifest.models)
    try:
        return choose_cpu_precision(settings.cpu_precision, support, manifest.parity.get(TIERS_KEY) or {},
                                    manifest.weights.get("origin") == "random")
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def gpu_precision(manifest: Manifest, settings: RuntimeSettings, provider: ProviderName) -> str:
    """The encoder's precision on a GPU provider: ``fp16`` (an fp16 graph, or TensorRT's own fp16
    build) or ``fp32``."""
    if provider == "tensorrt":
        return "fp16" if settings.providers.tensorrt.fp16 else "fp32"
    file = ort_runner.choose_model_file(manifest, "encoder", provider, settings)
    return next(m.precision for m in manifest.models.values() if m.file == file)


class SamEngine:
    """Thread-safe runners of one exported model (see module docstring).

    ``max_prompts`` / ``max_points``: limits of the decoder engine (TensorRT's optimization
    profile); a request beyond them is refused with a 400 naming the limit.
    ``prompts_per_run``: on the host, the decoder runs at most this many prompts at a time
    (its working memory grows with the prompts of a run: 64 prompts took 3.9 GB); None: all.
    ``device_plan``: on a GPU, how its memory is split (``runtime.device_memory``). An allocation
    failure in any stage raises ``DeviceMemoryExhausted`` (503 overloaded), never a 500.
    ``precision``: what the graphs run in, for logs, /stats and answers: the CPU tier (f32,
    bf16, int8; ``runtime.cpu_precision``) or, on a GPU, fp32 or fp16.
    ``cutout``: on a GPU, ``cutout_resize.onnx``, which resizes a device-decoded photo to the
    cut-out's size before it is copied to the host (``runtime.cutout_resize``); None: the host resizes.
    """

    def __init__(self, manifest: Manifest, encoder: EncoderRunner, decoder: DecoderRunner,
                 images: ImagePreprocessor | None = None, renderer: MaskRenderer | None = None,
                 max_prompts: int | None = None, max_points: int | None = None,
                 prompts_per_run: int | None = None, device_plan: DeviceMemoryPlan | None = None,
                 precision: str = "f32", cutout: OrtCutoutResizer | None = None) -> None:
        self.manifest = manifest
        self.encoder = encoder
        self.decoder = decoder
        self.preprocessor = Preprocessor(manifest.image_size, manifest.pixel_mean, manifest.pixel_std)
        self.images: ImagePreprocessor = images or PillowPreprocessor(self.preprocessor)
        self.renderer: MaskRenderer = renderer or NumpyMaskRenderer(manifest.image_size, manifest.mask_threshold)
        self.embedding_shape = manifest.embedding_shape
        self.low_res_size = manifest.low_res_size
        self.num_mask_tokens = manifest.num_mask_tokens
        self.max_prompts = max_prompts
        self.max_points = max_points
        self.prompts_per_run = prompts_per_run
        self.device_plan = device_plan
        self.precision = precision
        self.cutout = cutout
        self._encoder_lock = threading.Lock()
        #: Encoder runs since start-up, warm-up included (``/stats``).
        self.encoder_runs = 0

    @classmethod
    def from_model_dir(cls, model_dir: Path, settings: RuntimeSettings) -> SamEngine:
        """Validate ``model_dir`` and open every graph with the configured providers and backends."""
        model_dir = Path(model_dir)
        manifest = load_manifest(model_dir, verify_checksums=settings.verify_model_checksums)
        providers = usable_providers(settings)
        backends = choose_backends(settings, providers)
        tier = choose_precision(settings, manifest, backends, providers[0] in GPU_PROVIDERS)
        backends = choose_backends(settings, providers, tier)
        if "tensorrt" in providers and settings.providers.tensorrt.engine_cache:
            gpu_setup.seed_tensorrt_engines(model_dir, Path(settings.providers.tensorrt.cache_dir))
        graphs = GraphOpener(model_dir, manifest, settings, tier)
        encoder = graphs.encoder(backends["encoder"], providers)
        # What really runs decides the rest: a GPU build on a host whose GPU cannot start (no device,
        # an old driver) falls back to the CPU, and then the CPU's choices apply to every graph.
        on_gpu = encoder.provider in GPU_PROVIDERS
        if providers[0] in GPU_PROVIDERS and not on_gpu:
            log.warning("the GPU providers %s did not start (see above); every graph runs on the CPU", list(providers))
            providers = ("cpu",)
        prepost = checked_prepost(model_dir, manifest, settings, on_gpu)
        images = graphs.preprocessor(providers) if prepost["preprocess"] == "graph" else None
        plan = gpu_setup.memory_plan(manifest, providers[0], settings) if on_gpu else None
        renderer = graphs.renderer(providers, plan) if prepost["postprocess"] == "graph" else None
        decoder = graphs.decoder(backends["decoder"], providers, renderer)
        trt = settings.providers.tensorrt if decoder.provider == "tensorrt" else None
        cutout = gpu_setup.open_cutout_resizer(model_dir, manifest, providers, settings) if on_gpu else None
        engine = cls(manifest, encoder, decoder, images, renderer,
                     max_prompts=trt.max_prompts if trt else None, max_points=trt.max_points if trt else None,
                     prompts_per_run=None if decoder.provider in GPU_PROVIDERS else settings.cpu_decoder_prompts_per_run,
                     device_plan=plan, precision=gpu_precision(manifest, settings, encoder.provider) if on_gpu else tier,
                     cutout=cutout)
        log.info("model %s from %s: %s, precision %s (%s)", manifest.model_type, model_dir,
                 ", ".join(f"{stage} on {name}" for stage, name in engine.backends.items()), engine.precision,
                 manifest.weights.get("origin", "unknown weights"))
        return engine

    @property
    def provider(self) -> ProviderName:
        """The device class the encoder runs on: tensorrt, cuda or cpu."""
        return self.encoder.provider

    @property
    def backends(self) -> dict[str, str]:
        """What runs each stage, e.g. {"encoder": "openvino", "decoder": "onnxruntime", "preprocess": "pillow",
        "postprocess": "numpy"} (``provider`` says which device ONNX Runtime uses)."""
        return {"encoder": self.encoder.backend, "decoder": self.decoder.backend,
                "preprocess": self.images.backend, "postprocess": self.renderer.backend}

    @property
    def on_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS

    def load_image(self, data: bytes, limits: ImageLimits, probed: ImageHeader | None = None) -> LoadedImage:
        """Decode an uploaded image file (on the device for JPEGs when the GPU path has nvJPEG).

        ``probed``: ``probe_image(data, limits)``'s answer when the caller has it (not repeated).
        """
        return self.images.load(data, limits, probed)

    def at_output_size(self, image: LoadedImage | None, out_size_hw: tuple[int, int]) -> LoadedImage | None:
        """The decoded photo at the cut-out's (H', W'), resized on the device when it was decoded there
        (``cutout``), so only those pixels come to the host; otherwise ``image`` itself (the host resizes)."""
        if self.cutout is None or image is None:
            return image
        with out_of_memory_is_overload("the cut-out resize"):
            resized = self.cutout.resize(image, out_size_hw)
        return image if resized is None else LoadedImage.from_pil(resized)

    def prepare(self, image: LoadedImage | Image.Image) -> PreparedImage:
        """Upright RGB image -> encoder input (SamPredictor's resize, normalize, pad)."""
        if isinstance(image, Image.Image):
            image = LoadedImage.from_pil(image)
        with out_of_memory_is_overload("pre-processing"):
            return self.images.prepare(image)

    def encode(self, prepared: PreparedImage) -> Embedding:
        """Run the encoder (one at a time) on a prepared image."""
        size = self.manifest.image_size
        if shape_of(prepared.tensor) != (1, 3, size, size):
            raise ValueError(f"encoder input must be float32 1x3x{size}x{size}, got {shape_of(prepared.tensor)}")
        with self._encoder_lock, out_of_memory_is_overload("the image encoder"):
            value = self.encoder.encode(prepared.tensor)
            self.encoder_runs += 1
        if shape_of(value) != self.embedding_shape:
            raise ValueError(f"the encoder returned {shape_of(value)}, the manifest says {self.embedding_shape}")
        nbytes = int(np.prod(self.embedding_shape)) * 4
        return Embedding(value, nbytes, prepared.orig_size_hw, prepared.input_size_hw)

    def embedding_from_host(self, array: NDArray[np.float32]) -> EmbeddingValue:
        """A float32 1x256x64x64 host array as ``encode`` would return it: on the device for a GPU
        encoder (an ``OrtValue``), else the array itself (an embedding read from the shared tier)."""
        if self.on_gpu:
            return ort.OrtValue.ortvalue_from_numpy(array, "cuda", getattr(self.encoder, "device_id", 0))
        return array

    def decode(self, embedding: EmbeddingValue, point_coords: NDArray[np.float32], point_labels: NDArray[np.float32],
               mask_input: NDArray[np.float32] | None = None, has_mask_input: NDArray[np.float32] | None = None) -> Decoded:
        """Decode B prompts in one run.

        ``embedding``: the ``Embedding.value`` of the image. ``point_coords``: float32 BxNx2
        (x, y) in the resized frame; ``point_labels``: float32 BxN; ``mask_input``: float32
        Bx1xLxL or None; ``has_mask_input``: float32 B or None. Shapes are checked here
        (``ValueError`` naming the tensor); prompts beyond the decoder engine's limits raise
        ``InvalidPoints`` (a 400).
        """
        feeds = self._feeds(embedding, point_coords, point_labels, mask_input, has_mask_input)
        with out_of_memory_is_overload("the prompt decoder"):
            return self._decode_feeds(embedding, feeds)

    def _decode_feeds(self, embedding: EmbeddingValue, feeds: dict[str, NDArray[np.float32]]) -> Decoded:
        batch = feeds["point_coords"].shape[0]
        step = self.prompts_per_run
        if step is None or batch <= step:
            low_res, scores = self.decoder.decode(embedding, feeds)
        else:  # host logits: run the prompts in slices, so working memory is that of one slice
            low_res = np.empty((batch, self.num_mask_tokens, self.low_res_size, self.low_res_size), np.float32)
            scores = np.empty((batch, self.num_mask_tokens), np.float32)
            for start in range(0, batch, step):
                part_logits, part_scores = self.decoder.decode(
                    embedding, {name: value[start:start + step] for name, value in feeds.items()})
                low_res[start:start + step] = to_host(part_logits)
                scores[start:start + step] = part_scores
                del part_logits
        expected = (batch, self.num_mask_tokens, self.low_res_size, self.low_res_size)
        if shape_of(low_res) != expected:
            raise ValueError(f"the decoder returned logits {shape_of(low_res)}, expected {expected}")
        return Decoded(low_res if isinstance(low_res, ort.OrtValue) else np.asarray(low_res, np.float32),
                       np.asarray(scores, np.float32))

    def decoder_feeds(self, embedding: NDArray[np.float32], point_coords: NDArray[np.float32],
                      point_labels: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        """Every decoder input for B prompts without a mask input, as ``decode`` feeds them (host
        embedding float32 1x256x64x64, coords BxNx2 in the resized frame, labels BxN)."""
        return {"image_embeddings": embedding, **self._feeds(embedding, point_coords, point_labels, None, None)}

    def _feeds(self, embedding: EmbeddingValue, point_coords: NDArray[np.float32], point_labels: NDArray[np.float32],
               mask_input: NDArray[np.float32] | None, has_mask_input: NDArray[np.float32] | None
               ) -> dict[str, NDArray[np.float32]]:
        if shape_of(embedding) != self.embedding_shape:
            raise ValueError(f"image_embeddings must be {self.embedding_shape}, got {shape_of(embedding)}")
        coords = np.asarray(point_coords)
        labels = np.asarray(point_labels)
        if coords.ndim != 3 or coords.shape[2] != 2 or coords.shape[0] < 1 or coords.shape[1] < 1:
            raise ValueError(f"point_coords must be BxNx2 with B, N >= 1, got {coords.shape}")
        batch, points = coords.shape[:2]
        if labels.shape != (batch, points):
            raise ValueError(f"point_labels must be {batch}x{points} to match point_coords, got {labels.shape}")
        if not np.all(np.isfinite(coords)):
            raise InvalidPoints("point coordinates must be finite")
        if not np.all(np.isin(labels, POINT_LABELS)):
            raise ValueError(f"point_labels must be among {POINT_LABELS}, got {sorted(set(labels.ravel().tolist()))}")
        if self.max_prompts is not None and batch > self.max_prompts:
            raise InvalidPoints(f"{batch} prompts in one request is more than this decoder's limit of {self.max_prompts} "
                                "(SAM_TRT_MAX_PROMPTS)")
        if self.max_points is not None and points > self.max_points:
            raise InvalidPoints(f"{points} points per prompt (clicks, not-hold points and box corners) is more than this "
                                f"decoder's limit of {self.max_points} (SAM_TRT_MAX_POINTS)")
        low = self.low_res_size
        if mask_input is None:
            mask_input = np.zeros((batch, 1, low, low), np.float32)
            has_mask_input = np.zeros(batch, np.float32)
        elif has_mask_input is None:
            has_mask_input = np.ones(batch, np.float32)
        if np.shape(mask_input) != (batch, 1, low, low):
            raise ValueError(f"mask_input must be {batch}x1x{low}x{low}, got {np.shape(mask_input)}")
        if np.shape(has_mask_input) != (batch,):
            raise ValueError(f"has_mask_input must have {batch} values, got shape {np.shape(has_mask_input)}")
        return {
            "point_coords": np.ascontiguousarray(coords, np.float32),
            "point_labels": np.ascontiguousarray(labels, np.float32),
            "mask_input": np.ascontiguousarray(mask_input, np.float32),
            "has_mask_input": np.ascontiguousarray(has_mask_input, np.float32),
        }

    def mask_indices(self, tokens: Sequence[int]) -> NDArray[np.int64]:
        """The renderer's index of prompt i's mask token ``tokens[i]``: i * T + token (T = num_mask_tokens)."""
        chosen = np.asarray(tokens, dtype=np.int64)
        if np.any(chosen < 0) or np.any(chosen >= self.num_mask_tokens):
            raise ValueError(f"mask tokens must lie in 0..{self.num_mask_tokens - 1}, got {chosen.tolist()}")
        return np.arange(chosen.size, dtype=np.int64) * self.num_mask_tokens + chosen

    def render(self, decoded: Decoded, tokens: Sequence[int], input_size_hw: tuple[int, int],
               out_size_hw: tuple[int, int], min_area: int = 0, keep_masks: bool = False) -> RenderedMasks:
        """Full-size masks of prompt i's token ``tokens[i]`` (see ``runtime.render.MaskRenderer``)."""
        if len(tokens) != shape_of(decoded.low_res_masks)[0]:
            raise ValueError(f"{len(tokens)} tokens for {shape_of(decoded.low_res_masks)[0]} prompts")
        indices = self.mask_indices(tokens)
        with out_of_memory_is_overload("mask rendering"):
            return self.renderer.render(decoded.low_res_masks, indices, input_size_hw, out_size_hw, min_area, keep_masks)

    def warm_up(self) -> None:
        """One run of every runner, so the first request pays no lazy initialization."""
        blank = Image.new("RGB", (64, 48))
        buffer = io.BytesIO()
        blank.save(buffer, format="JPEG")
        image = self.load_image(buffer.getvalue(), ImageLimits(max_pixels=64 * 48))
        embedding = self.encode(self.prepare(image))
        decoded = self.decode(embedding.value, np.array([[[10.0, 10.0], [0.0, 0.0]]], np.float32),
                              np.array([[1.0, -1.0]], np.float32))
        self.render(decoded, [0], embedding.input_size_hw, embedding.orig_size_hw)

