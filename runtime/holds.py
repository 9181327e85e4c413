"""Hold extraction: clicks on a wall photo -> one mask per click, OR-ed into the hold mask.

Default semantics are the old service's: every hold click (label 1) is its own prompt,
decoded with ``multimask_output=False`` (mask token 0), and the masks are OR-ed. "Not
hold" clicks (label 0) join every hold click's prompt as negative points; an optional
box joins every prompt as SAM box corners. ``mode="single"`` instead sends all points as
one prompt. All prompts of a request are decoded in one decoder run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from runtime.cache import CachedImage, EmbeddingCache, image_id_for, local_copy
from runtime.engine import SamEngine
from runtime.errors import BadRequest, DeviceMemoryExhausted, InvalidPoints
from runtime.image_files import DEFAULT_IMAGE_LIMITS, ImageHeader, ImageLimits, probe_image, read_image
from runtime.masks import BitMask, BoxXYXY
from runtime.pixel_store import kept_pixels
from runtime.preprocessors import LoadedImage
from runtime.prompt_reuse import PromptReuse
from runtime.sam_preprocessing import check_resizable, to_model_coords
from runtime.settings import RuntimeSettings
from runtime.shared_store import Outcome
from runtime.shared_tier import SharedTier, behind_tier, cached_or_shared, open_shared_tier
from runtime.tensors import EmbeddingValue

PromptMode = Literal["per_click", "single"]


@dataclass(frozen=True)
class Click:
    """A tapped point, (x, y) in pixels of the upright image; label 1 hold, 0 not hold."""

    x: float
    y: float
    label: int = 1


@dataclass(frozen=True)
class ExtractOptions:
    """Per-request options. ``min_area`` is in output pixels (0: keep every mask)."""

    mode: PromptMode = "per_click"
    multimask: bool = False
    min_area: int = 0
    max_output_side: int | None = None
    per_click_masks: bool = False


@dataclass(frozen=True)
class GivenEmbedding:
    """An embedding the client brought instead of a photo: decoded without the encoder, never cached.

    ``array``: float32 1x256x64x64 (``Manifest.embedding_shape``), C order, on the host.
    ``orig_size_hw``: the upright original (H, W) it was made from; ``input_size_hw``: the resized (h, w).
    """

    array: NDArray[np.float32]
    orig_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]


@dataclass(frozen=True)
class ExtractRequest:
    """Exactly one of ``image_bytes`` (an image file), ``image_id`` (a cached image) and ``embedding``
    (a brought embedding: no pixels, so ``need_pixels`` must be False)."""

    clicks: tuple[Click, ...]
    image_bytes: bytes | None = None
    image_id: str | None = None
    box_xyxy: tuple[float, float, float, float] | None = None
    options: ExtractOptions = field(default_factory=ExtractOptions)
    need_pixels: bool = True
    #: Called with the output size (H', W') before any model work; raises to refuse the request
    #: (e.g. an output format that cannot hold that many pixels).
    output_check: Callable[[tuple[int, int]], None] | None = None
    #: No clicks and no box is a valid request (one that asks for the embedding alone): nothing is decoded.
    prompts_optional: bool = False
    embedding: GivenEmbedding | None = None


@dataclass(frozen=True)
class PromptResult:
    """One decoded prompt: its score, chosen mask token, area (output pixels), filter verdict, and
    its mask's bounding box (x0, y0, x1, y1) in output pixels (x1/y1 one past the last; None if empty)."""

    click_indices: tuple[int, ...]
    score: float
    token: int
    area: int
    kept: bool
    box_xyxy: BoxXYXY | None = None


@dataclass
class HoldResult:
    """The answer. ``union``: the hold mask at ``out_size_hw``; ``masks``: each prompt's mask (when
    asked for); ``rgb``: the photo at that size (when pixels are needed). ``image_id``: None for a
    brought embedding (it is never cached, so it has no id)."""

    image_id: str | None
    cache_hit: bool
    orig_size_hw: tuple[int, int]
    out_size_hw: tuple[int, int]
    union: BitMask
    prompts: list[PromptResult]
    rgb: Image.Image | None
    masks: list[BitMask] | None
    timings_ms: dict[str, float]
    #: What the shared tier's lookup found (hit, miss, error); None when it was not asked.
    shared_cache: Outcome | None = None
    #: The image embedding (float32 1x256x64x64, host or device) and the resized (h, w) it was encoded at.
    embedding: EmbeddingValue | None = None
    input_size_hw: tuple[int, int] | None = None

    @property
    def mask(self) -> NDArray[np.bool_]:
        """The hold mask, bool (H', W')."""
        return self.union.dense()

    @property
    def prompt_masks(self) -> list[NDArray[np.bool_]] | None:
        """Each prompt's mask, bool (H', W'), or None when not asked for."""
        return None if self.masks is None else [mask.dense() for mask in self.masks]

    @property
    def empty(self) -> bool:
        return not self.union.any()


def output_size_hw(orig_size_hw: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """Output (H', W'): the original size, or scaled so the longest side is ``max_side``."""
    height, width = orig_size_hw
    if max_side is None or max(height, width) <= max_side:
        return orig_size_hw
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_clicks(clicks: tuple[Click, ...], box: tuple[float, float, float, float] | None, max_clicks: int,
                 prompts_optional: bool = False) -> None:
    """Validate what can be checked without the image size: count, finiteness, labels.

    ``prompts_optional``: no clicks and no box at all is valid (nothing will be decoded)."""
    if len(clicks) > max_clicks:
        raise InvalidPoints(f"{len(clicks)} points is more than the limit of {max_clicks} per request")
    for index, click in enumerate(clicks):
        if not (math.isfinite(click.x) and math.isfinite(click.y)):
            raise InvalidPoints(f"point {index} has a non-finite coordinate ({click.x}, {click.y})")
        if click.label not in (0, 1):
            raise InvalidPoints(f"point {index} has label {click.label}; labels are 1 (hold) or 0 (not hold)")
    if box is not None and not all(math.isfinite(v) for v in box):
        raise InvalidPoints(f"box {box} has a non-finite coordinate")
    if prompts_optional and not clicks and box is None:
        return
    if not any(c.label == 1 for c in clicks) and box is None:
        raise InvalidPoints("at least one hold point (label 1) or a box is required")


def check_bounds(clicks: tuple[Click, ...], box: tuple[float, float, float, float] | None, size_hw: tuple[int, int]) -> None:
    """Every point inside the image: 0 <= x <= W and 0 <= y <= H (upright frame, pixels)."""
    height, width = size_hw
    for index, click in enumerate(clicks):
        if not (0 <= click.x <= width and 0 <= click.y <= height):
            raise InvalidPoints(
                f"point {index} ({click.x}, {click.y}) is outside the {width}x{height} image "
                "(x in 0..width, y in 0..height, upright orientation)"
            )
    if box is not None:
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise InvalidPoints(f"box {box} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")


def build_prompts(clicks: tuple[Click, ...], box: tuple[float, float, float, float] | None,
                  mode: PromptMode) -> tuple[NDArray[np.float32], NDArray[np.float32], list[tuple[int, ...]]]:
    """Prompts as SamPredictor builds them: (coords float32 BxNx2 (x, y) original pixels, labels float32
    BxN, the click indices of each prompt). Clicks with a box get its corners (labels 2, 3);
    without a box a padding point (0, 0) with label -1, as ``SamPredictor`` adds."""
    negatives = [i for i, c in enumerate(clicks) if c.label == 0]
    if mode == "single":
        groups = [tuple(range(len(clicks)))]
    else:
        groups = [(i, *negatives) for i, c in enumerate(clicks) if c.label == 1] or [tuple(negatives)]
    coords, labels = [], []
    for group in groups:
        pts = [(clicks[i].x, clicks[i].y) for i in group]
        lab = [float(clicks[i].label) for i in group]
        if box is not None:
            pts += [(box[0], box[1]), (box[2], box[3])]
            lab += [2.0, 3.0]
        else:
            pts.append((0.0, 0.0))
            lab.append(-1.0)
        coords.append(pts)
        labels.append(lab)
    return np.asarray(coords, np.float32), np.asarray(labels, np.float32), groups


log = logging.getLogger(__name__)

#: Share of the cached embeddings freed when a request runs out of (device) memory.
OUT_OF_MEMORY_RELEASE_FRACTION = 0.5


class HoldExtractor:
    """Clicks -> hold masks, with the embedding cache in front of the encoder. Thread-safe."""

    def __init__(self, engine: SamEngine, cache: EmbeddingCache, max_clicks: int = 64,
                 image_limits: ImageLimits = DEFAULT_IMAGE_LIMITS, shared: SharedTier | None = None,
                 shared_off_reason: str | None = None, prompt_cache_bytes_per_image: int = 0) -> None:
        self.engine = engine
        self.prompts = PromptReuse(engine, cache, prompt_cache_bytes_per_image)
        self.cache = cache
        self.max_clicks = max_clicks
        self.image_limits = image_limits
        self.shared = shared
        self.shared_off_reason = shared_off_reason
        #: Image files decoded since start-up (``/stats`` ``image_decodes``): each upload encoded here,
        #: and each follow-up cut-out from a shared-tier entry's file; never one from kept pixels.
        self.image_decodes = 0
        self._decodes_lock = threading.Lock()

    @classmethod
    def from_model_dir(cls, model_dir: Path, settings: RuntimeSettings) -> HoldExtractor:
        """Open the model's sessions, a cache sized for the device (see ``RuntimeSettings``) and,
        with SAM_SHARED_CACHE_URL, the shared tier behind it."""
        engine = SamEngine.from_model_dir(model_dir, settings)
        budget = settings.cache_budget(engine.on_gpu)
        if engine.device_plan is not None:  # embeddings live in device memory: its plan bounds them too
            budget = min(budget, engine.device_plan.cache_bytes)
        cache = EmbeddingCache(budget)
        shared, off_reason = open_shared_tier(settings.shared_cache, engine)
        return cls(engine, cache, settings.max_clicks, ImageLimits(settings.max_image_pixels, settings.max_jpeg_scans),
                   shared, off_reason, settings.prompt_cache_bytes_per_image)

    def shared_stats(self) -> dict[str, object]:
        """The shared tier's counters and state, or why it is off."""
        if self.shared is None:
            return {"enabled": False, "reason": self.shared_off_reason}
        return self.shared.stats()

    def cached(self, image_id: str) -> tuple[CachedImage, Outcome | None]:
        """The entry of a follow-up by ``image_id``: local, else the shared tier's; else 404 ``unknown_image_id``."""
        return cached_or_shared(self.cache, self.shared, image_id)

    def embed(self, image_bytes: bytes, keep_image: bool = True, probed: ImageHeader | None = None
              ) -> tuple[CachedImage, bool, LoadedImage | None, dict[str, float], Outcome | None]:
        """Encode an image file (or find it cached): (entry, cache hit, decoded image or None, timings,
        the shared tier's answer). A hit is an entry found locally or in the shared tier (no encoder run).

        ``keep_image``: return the decoded image (for the cut-out); otherwise it is freed as soon
        as the encoder's input is made (a 64 MP photo holds 256 MB in Pillow). ``probed``:
        ``probe_image(image_bytes, self.image_limits)``'s answer when the caller has it, so its
        checks (a JPEG's marker walk) are not repeated by the decode.
        """
        timings: dict[str, float] = {}
        decoded: list[LoadedImage] = []
        compute = self.encoder_run(image_bytes, timings, decoded if keep_image else None, probed)
        image_id = image_id_for(image_bytes)
        outcome: list[Outcome | None] = []
        published = behind_tier(self.shared, image_id, compute, outcome)
        entry, hit = self.cache.get_or_compute(image_id, lambda: local_copy(published()))
        shared = outcome[0] if outcome else None
        return entry, hit or shared == "hit", (decoded[0] if decoded else None), timings, shared

    def encoder_run(self, image_bytes: bytes, timings: dict[str, float], decoded: list[LoadedImage] | None = None,
                    probed: ImageHeader | None = None) -> Callable[[], CachedImage]:
        """The encoder run for an image file, not yet run and behind no cache: decode, prepare (the 1024
        frame) and encode; adds image_decode_ms, preprocess_ms and encoder_ms to ``timings``. ``decoded``
        gets the decoded image (for a cut-out) when given; otherwise it is freed once the encoder's input
        is made."""
        def compute() -> CachedImage:
            start = time.perf_counter()
            self._count_decode()
            image = self.engine.load_image(image_bytes, self.image_limits, probed)
            timings["image_decode_ms"] = _ms(start)
            start = time.perf_counter()
            prepared = self.engine.prepare(image)
            pixels = kept_pixels(image)
            if decoded is not None:
                decoded.append(image)
            del image
            timings["preprocess_ms"] = _ms(start)
            start = time.perf_counter()
            embedding = self.engine.encode(prepared)
            timings["encoder_ms"] = _ms(start)
            return CachedImage(image_id_for(image_bytes), embedding.value, embedding.nbytes,
                               embedding.orig_size_hw, embedding.input_size_hw, image_bytes, pixels)
        return compute

    def extract(self, request: ExtractRequest) -> HoldResult:
        """Run a request end to end, except encoding the output images.

        Out of (device) memory: half the cached embeddings are freed and ``DeviceMemoryExhausted``
        (503 overloaded) is raised, so a retry finds room.
        """
        with self.freeing_cache_when_out_of_memory():
            return self._extract(request)

    @contextlib.contextmanager
    def freeing_cache_when_out_of_memory(self) -> Iterator[None]:
        """Around model work: out of (device) memory frees half the cached embeddings, then re-raises."""
        try:
            yield
        except DeviceMemoryExhausted:
            freed = self.cache.release_oldest(OUT_OF_MEMORY_RELEASE_FRACTION)
            log.warning("out of memory: %d bytes of cached embeddings freed", freed)
            raise

    def _extract(self, request: ExtractRequest) -> HoldResult:
        sources = [request.image_bytes is not None, request.image_id is not None, request.embedding is not None]
        if sum(sources) != 1:
            raise BadRequest("send exactly one of an image, an image_id and an embedding")
        check_clicks(request.clicks, request.box_xyxy, self.max_clicks, request.prompts_optional)
        entry, hit, image, timings, shared = self._entry(request)
        out_size = output_size_hw(entry.orig_size_hw, request.options.max_output_side)
        if request.clicks or request.box_xyxy is not None:
            union, prompts, masks = self._decode(request, entry, out_size, timings)
        else:  # the embedding alone was asked for
            union, prompts, masks = BitMask.empty(out_size), [], None
        rgb: Image.Image | None = None
        if request.need_pixels:
            start = time.perf_counter()
            image = self.engine.at_output_size(image, out_size)  # resized on the device when decoded there
            rgb = image.rgb() if image is not None else self._follow_up_pixels(entry)
            if (rgb.height, rgb.width) != out_size:
                rgb = rgb.resize((out_size[1], out_size[0]), Image.Resampling.BILINEAR)
            timings["cutout_pixels_ms"] = _ms(start)
        return HoldResult(entry.image_id or None, hit, entry.orig_size_hw, out_size, union, prompts, rgb, masks,
                          timings, shared, entry.embedding, entry.input_size_hw)

    def _entry(self, request: ExtractRequest
               ) -> tuple[CachedImage, bool, LoadedImage | None, dict[str, float], Outcome | None]:
        """The request's image as a cache entry, checked against the request (see ``embed`` for the tuple).
        A brought embedding becomes a transient entry with an empty ``image_id``: it is never cached."""
        if request.image_bytes is not None:
            header = probe_image(request.image_bytes, self.image_limits)
            size_hw = header.upright_size_hw
            check_resizable(size_hw, self.engine.manifest.image_size)
            self._check_request(request, size_hw)
            entry, hit, image, timings, shared = self.embed(request.image_bytes, keep_image=request.need_pixels,
                                                            probed=header)
            if entry.orig_size_hw != size_hw:  # the header did not tell the orientation (a late PNG eXIf chunk)
                self._check_request(request, entry.orig_size_hw)
            return entry, hit, image, timings, shared
        if request.embedding is not None:
            if request.need_pixels:
                raise BadRequest("a brought embedding has no pixels: no cut-out can be made (result_format none)")
            given = request.embedding
            self._check_request(request, given.orig_size_hw)
            entry = CachedImage("", self.engine.embedding_from_host(given.array), given.array.nbytes,
                                given.orig_size_hw, given.input_size_hw, b"")
            return entry, False, None, {}, None
        (entry, shared), hit = self.cached(str(request.image_id)), True
        self._check_request(request, entry.orig_size_hw)
        return entry, hit, None, {}, shared

    def _decode(self, request: ExtractRequest, entry: CachedImage, out_size: tuple[int, int],
                timings: dict[str, float]) -> tuple[BitMask, list[PromptResult], list[BitMask] | None]:
        """Decode the request's prompts on ``entry``'s embedding: (union mask at ``out_size``, per-prompt
        results, per-prompt masks when asked for); adds decoder_ms and postprocess_ms to ``timings``."""
        options = request.options
        start = time.perf_counter()
        coords, labels, groups = build_prompts(request.clicks, request.box_xyxy, options.mode)
        model_coords = to_model_coords(coords, entry.orig_size_hw, self.engine.manifest.image_size)
        if request.embedding is None:
            decoded, counts = self.prompts.decode(entry, model_coords, labels)
        else:  # a brought embedding has no cache entry to keep decoded prompts with
            decoded, counts = self.engine.decode(entry.embedding, model_coords, labels), {}
        timings["decoder_ms"] = _ms(start)
        timings.update(counts)

        start = time.perf_counter()
        scores = decoded.iou_predictions
        tokens = [1 + int(np.argmax(scores[i, 1:])) if options.multimask else 0 for i in range(len(groups))]
        rendered = self.engine.render(decoded, tokens, entry.input_size_hw, out_size, options.min_area,
                                      options.per_click_masks)
        prompts = [PromptResult(group, float(scores[i, tokens[i]]), tokens[i], int(rendered.areas[i]),
                                bool(rendered.kept[i]), rendered.boxes_xyxy[i]) for i, group in enumerate(groups)]
        timings["postprocess_ms"] = _ms(start)
        return rendered.union, prompts, rendered.masks

    def _follow_up_pixels(self, entry: CachedImage) -> Image.Image:
        """The upright RGB image (``entry.orig_size_hw``) of a cached entry: its kept pixels, else its file decoded."""
        if entry.upright_pixels is not None:
            return entry.upright_pixels
        self._count_decode()
        return read_image(entry.image_bytes, limits=self.image_limits)

    def _count_decode(self) -> None:
        with self._decodes_lock:
            self.image_decodes += 1

    @staticmethod
    def _check_request(request: ExtractRequest, size_hw: tuple[int, int]) -> None:
        """Everything that can refuse the request once the image's size is known, before model work."""
        check_bounds(request.clicks, request.box_xyxy, size_hw)
        if request.output_check is not None:
            request.output_check(output_size_hw(size_hw, request.options.max_output_side))


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
