"""The exported pre- and post-processing graphs on ONNX Runtime (CPU EP, or CUDA EP with IO binding).

On a GPU provider:
- ``OrtPreprocessor`` takes the image as uint8 (decoded on the device by nvJPEG when it is a
  JPEG, else uploaded once) and leaves the encoder input on the device as an ``OrtValue``;
- ``OrtMaskRenderer`` binds the decoder's logits ``OrtValue`` and copies back only the
  bit-packed union (H' x ceil(W'/8) bytes), areas, boxes and the kept flags (and the
  per-prompt masks when asked). Large outputs are rendered in chunks of prompts so that the
  full-size float intermediates stay within ``max_pixels_per_run`` pixels.
On CPU the same graphs run with plain ``session.run`` (the benchmark compares them with the
numpy/Pillow runners; see ``runtime.prepost_choice`` for which one serves).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from runtime.device_memory import DEFAULT_RENDER_RUN_PIXELS, RenderSlots
from runtime.gpu_jpeg_reader import GpuJpegReader, device_pointer
from runtime.image_files import ImageHeader, ImageLimits, probe_image, read_image
from runtime.manifest import POSTPROCESS_INPUTS, POSTPROCESS_OUTPUTS, PREPROCESS_INPUTS, PREPROCESS_OUTPUTS
from runtime.masks import BitMask, BoxXYXY
from runtime.preprocessors import LoadedImage
from runtime.providers import GPU_PROVIDERS, ProviderName
from runtime.render import RenderedMasks
from runtime.sam_preprocessing import PreparedImage, resized_size_hw
from runtime.tensors import LogitsValue, shape_of

BACKEND_NAME = "onnxruntime"


def device_arena_shrinkage(provider: ProviderName, device_id: int) -> ort.RunOptions | None:
    """Run options that hand a GPU run's transient arena memory back to CUDA after the run (a 12 MP
    image's float copy, a render's full-size intermediates), so the arena does not keep its peak."""
    if provider not in GPU_PROVIDERS:
        return None
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", f"gpu:{device_id}")
    return options


class OrtPreprocessor:
    """``preprocess.onnx``: uint8 HxWx3 -> float32 1x3xSxS (see ``export/prepost_graphs.py``)."""

    backend = BACKEND_NAME

    def __init__(self, session: ort.InferenceSession, provider: ProviderName, image_size: int, device_id: int = 0,
                 jpeg_reader: GpuJpegReader | None = None) -> None:
        self._session = session
        self.provider = provider
        self.image_size = image_size
        self.device_id = device_id
        self.jpeg_reader = jpeg_reader
        self._run_options = device_arena_shrinkage(provider, device_id)

    def load(self, data: bytes, limits: ImageLimits, probed: ImageHeader | None = None) -> LoadedImage:
        """JPEG on a GPU: header checks, then nvJPEG into device memory; otherwise Pillow."""
        if self.jpeg_reader is not None:
            probed = probed or probe_image(data, limits)
            loaded = self.jpeg_reader.read(data, probed)
            if loaded is not None:
                return loaded
        return LoadedImage.from_pil(read_image(data, limits=limits, probed=probed))

    def prepare(self, image: LoadedImage) -> PreparedImage:
        image_input, size_input = PREPROCESS_INPUTS
        input_size_hw = resized_size_hw(image.size_hw, self.image_size)
        sizes = np.asarray(input_size_hw, dtype=np.int64)
        if self.provider not in GPU_PROVIDERS:
            pixels = np.asarray(image.rgb(), dtype=np.uint8)
            tensor = self._session.run(list(PREPROCESS_OUTPUTS), {image_input: pixels, size_input: sizes})[0]
            return PreparedImage(tensor, image.size_hw, input_size_hw)
        binding = self._session.io_binding()
        if image.device is not None:
            height, width = image.size_hw
            binding.bind_input(image_input, "cuda", self.device_id, np.uint8, [height, width, 3],
                               device_pointer(image.device))
        else:
            binding.bind_cpu_input(image_input, np.ascontiguousarray(np.asarray(image.rgb(), dtype=np.uint8)))
        binding.bind_cpu_input(size_input, sizes)
        binding.bind_output(PREPROCESS_OUTPUTS[0], "cuda", self.device_id)
        self._session.run_with_iobinding(binding, self._run_options)
        return PreparedImage(binding.get_outputs()[0], image.size_hw, input_size_hw)


class OrtMaskRenderer:
    """``postprocess.onnx``: logits -> packed full-size masks, union, areas, boxes, kept flags."""

    backend = BACKEND_NAME

    def __init__(self, session: ort.InferenceSession, provider: ProviderName, device_id: int = 0,
                 max_pixels_per_run: int = DEFAULT_RENDER_RUN_PIXELS, slots: RenderSlots | None = None) -> None:
        if max_pixels_per_run <= 0:
            raise ValueError("max_pixels_per_run must be positive")
        self._session = session
        self.provider = provider
        self.device_id = device_id
        self.max_pixels_per_run = max_pixels_per_run
        self.slots = slots
        self._run_options = device_arena_shrinkage(provider, device_id)

    def render(self, low_res: LogitsValue, mask_indices: NDArray[np.int64], input_size_hw: tuple[int, int],
               out_size_hw: tuple[int, int], min_area: int, keep_masks: bool) -> RenderedMasks:
        indices = np.ascontiguousarray(mask_indices, dtype=np.int64)
        if indices.ndim != 1 or indices.size == 0:
            raise ValueError(f"mask_indices must be a non-empty int64 vector, got shape {indices.shape}")
        prompts, tokens = shape_of(low_res)[:2]
        if indices.min() < 0 or indices.max() >= prompts * tokens:
            raise ValueError(f"mask_indices must lie in 0..{prompts * tokens - 1} for {prompts}x{tokens} masks")
        height, width = out_size_hw
        per_run = max(1, self.max_pixels_per_run // max(1, height * width))
        union: BitMask | None = None
        areas, boxes, kept, masks = [], [], [], []
        for start in range(0, indices.size, per_run):
            with self.slots.held() if self.slots is not None else contextlib.nullcontext():
                out = self._run(low_res, indices[start:start + per_run], input_size_hw, out_size_hw, min_area,
                                keep_masks)
            chunk_union = BitMask(out_size_hw, packed=out["union_packed"])
            union = chunk_union if union is None else union | chunk_union
            areas.append(out["areas"])
            kept.append(out["kept"])
            boxes += [_box(row, out_size_hw) for row in out["boxes_xyxy"]]
            if keep_masks:
                masks += [BitMask(out_size_hw, packed=packed) for packed in out["masks_packed"]]
        assert union is not None
        return RenderedMasks(out_size_hw, union, np.concatenate(areas).astype(np.int64), boxes,
                             np.concatenate(kept).astype(bool), masks if keep_masks else None)

    def _run(self, low_res: LogitsValue, indices: NDArray[np.int64], input_size_hw: tuple[int, int],
             out_size_hw: tuple[int, int], min_area: int, keep_masks: bool) -> dict[str, NDArray[Any]]:
        names = POSTPROCESS_INPUTS
        small = {names[1]: indices, names[2]: np.asarray(input_size_hw, np.int64),
                 names[3]: np.asarray(out_size_hw, np.int64), names[4]: np.asarray(min_area, np.int64)}
        wanted = [name for name in POSTPROCESS_OUTPUTS if keep_masks or name != "masks_packed"]
        if not isinstance(low_res, ort.OrtValue) and self.provider not in GPU_PROVIDERS:
            values = self._session.run(wanted, {names[0]: np.ascontiguousarray(low_res, np.float32), **small})
            return dict(zip(wanted, values))
        binding = self._session.io_binding()
        if isinstance(low_res, ort.OrtValue):
            binding.bind_ortvalue_input(names[0], low_res)
        else:
            binding.bind_cpu_input(names[0], np.ascontiguousarray(low_res, np.float32))
        for name, value in small.items():
            binding.bind_cpu_input(name, value)
        for name in POSTPROCESS_OUTPUTS:  # unwanted per-prompt masks stay on the device, uncopied
            binding.bind_output(name, "cpu" if name in wanted else "cuda", self.device_id if name not in wanted else 0)
        self._session.run_with_iobinding(binding, self._run_options)
        outputs = dict(zip(POSTPROCESS_OUTPUTS, binding.get_outputs()))
        return {name: outputs[name].numpy() for name in wanted}


def _box(row: NDArray[np.int64], size_hw: tuple[int, int]) -> BoxXYXY | None:
    x0, y0, x1, y1 = (int(v) for v in row)
    return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)
