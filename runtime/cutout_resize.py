"""The cut-out's pixels resized where the photo was decoded: ``cutout_resize.onnx`` on the device.

On a GPU the photo nvJPEG decoded stays in device memory (``LoadedImage.device``); the graph
resizes it there to the output size (H', W') and only those pixels, ``cutout_copy_bytes``
(H' x W' x 3), are copied to the host, into one reused page-locked buffer
(``runtime.host_staging``), instead of the whole decoded photo (36 MB at 12 MP) through a
buffer allocated per call and a resize on the CPU.

The graph is Pillow's BILINEAR (``export/prepost_graphs.build_cutout_resize``): within one level
per channel of the CPU path's resize, except in the outermost row and column when shrinking
(``MAX_BORDER_LEVELS_FROM_PILLOW``). A photo that Pillow decoded on the host is left to the host
(None): uploading it to resize it would copy more, not less. On the CPU EP (tests, the
placement report) the same runner resizes host photos through the same binding code.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
from PIL import Image

from runtime.cuda_runtime import CudaError
from runtime.device_memory import cutout_copy_bytes
from runtime.gpu_jpeg_reader import device_pointer
from runtime.host_staging import StagingBuffer, host_view
from runtime.manifest import CUTOUT_RESIZE_INPUTS, CUTOUT_RESIZE_OUTPUTS
from runtime.preprocessors import LoadedImage
from runtime.providers import GPU_PROVIDERS, ProviderName

log = logging.getLogger(__name__)

#: Largest difference from Pillow's BILINEAR inside the border (pixel levels, per channel).
MAX_LEVELS_FROM_PILLOW = 1
#: Largest difference in the outermost row and column when shrinking (measured 14 on pixel noise).
MAX_BORDER_LEVELS_FROM_PILLOW = 16


class OrtCutoutResizer:
    """``cutout_resize.onnx``: a decoded photo (device or host) -> an RGB PIL image at (H', W').

    ``copied_bytes``: bytes the last resize copied from its output to the host buffer.
    """

    backend = "onnxruntime"

    def __init__(self, session: ort.InferenceSession, provider: ProviderName, staging: StagingBuffer,
                 device_id: int = 0, run_options: ort.RunOptions | None = None) -> None:
        self._session = session
        self.provider = provider
        self.staging = staging
        self.device_id = device_id
        self._run_options = run_options
        self.copied_bytes = 0

    def resize(self, image: LoadedImage, out_size_hw: tuple[int, int]) -> Image.Image | None:
        """``image`` (H x W x 3 uint8 RGB, upright) at ``out_size_hw`` (H', W'), or None when a GPU
        runner is given a photo on the host, or no pinned memory can be allocated (the caller
        resizes on the host then)."""
        if self.provider in GPU_PROVIDERS and image.device is None:
            return None
        try:
            return self._resize(image, out_size_hw)
        except CudaError as exc:  # no pinned memory to be had: the host path copies the photo instead
            log.warning("cannot stage the cut-out's pixels in pinned memory (%s): resizing on the host", exc)
            return None

    def _resize(self, image: LoadedImage, out_size_hw: tuple[int, int]) -> Image.Image:
        height, width = out_size_hw
        nbytes = cutout_copy_bytes(out_size_hw)
        with self.staging.held(nbytes) as address:
            binding = self._session.io_binding()
            self._bind_photo(binding, image)
            binding.bind_cpu_input(CUTOUT_RESIZE_INPUTS[1], np.asarray(out_size_hw, dtype=np.int64))
            binding.bind_output(CUTOUT_RESIZE_OUTPUTS[0], "cpu", 0, np.uint8, [height, width, 3], address)
            self._session.run_with_iobinding(binding, self._run_options)
            self.copied_bytes = nbytes
            # Pillow copies RGB pixels into its own 4-byte layout: the staging buffer is free for the next call.
            return Image.fromarray(host_view(address, nbytes).reshape(height, width, 3))

    def _bind_photo(self, binding: ort.IOBinding, image: LoadedImage) -> None:
        """The photo as the graph's input: bound where it lies (device memory, or the host)."""
        name = CUTOUT_RESIZE_INPUTS[0]
        if image.device is not None and self.provider in GPU_PROVIDERS:
            height, width = image.size_hw
            binding.bind_input(name, "cuda", self.device_id, np.uint8, [height, width, 3],
                               device_pointer(image.device))
        else:
            binding.bind_cpu_input(name, np.ascontiguousarray(np.asarray(image.rgb(), dtype=np.uint8)))
