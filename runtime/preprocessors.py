"""Image runners: an uploaded file -> a decoded image -> the encoder's input.

``PillowPreprocessor`` decodes with Pillow and resizes/normalizes/pads in Pillow and numpy
(bit-identical to ``SamPredictor``; on CPU the fastest measured).
``runtime.graph_runners.OrtPreprocessor`` runs the exported ``preprocess.onnx`` graph, on
the CUDA EP on a GPU (the image goes up once as uint8, or is decoded there by nvJPEG), and
returns the encoder input as a device ``OrtValue``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from runtime.image_files import ImageHeader, ImageLimits, read_image
from runtime.providers import ProviderName
from runtime.sam_preprocessing import PreparedImage, Preprocessor


@dataclass
class LoadedImage:
    """A decoded upright RGB image, on the host (``host``) or on the device (``device``).

    ``size_hw``: (H, W) pixels. ``device``: an object with ``__cuda_array_interface__``
    (HxWx3 uint8, e.g. an nvImageCodec image) kept alive while bound; ``to_host`` copies it.
    """

    size_hw: tuple[int, int]
    host: Image.Image | None = None
    device: Any = None
    _to_host: Any = field(default=None, repr=False)

    @classmethod
    def from_pil(cls, image: Image.Image) -> LoadedImage:
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode}")
        return cls((image.height, image.width), host=image)

    def rgb(self) -> Image.Image:
        """The image as an RGB PIL image on the host (copied from the device once if needed)."""
        if self.host is None:
            array: NDArray[np.uint8] = self._to_host(self.device)
            self.host = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
        return self.host


class ImagePreprocessor(Protocol):
    """Decodes uploads and prepares the encoder's input (float32 1x3xSxS, host or device)."""

    backend: str
    provider: ProviderName

    def load(self, data: bytes, limits: ImageLimits, probed: ImageHeader | None = None) -> LoadedImage:
        """Decode an image file (refusing what ``limits`` forbid before any pixel work).

        ``probed``: ``probe_image(data, limits)``'s answer when the caller has it (not repeated).
        """
        ...

    def prepare(self, image: LoadedImage) -> PreparedImage:
        """SamPredictor's resize, normalize and pad."""
        ...


class PillowPreprocessor:
    """Pillow decoding and ``runtime.sam_preprocessing.Preprocessor`` (host memory)."""

    backend = "pillow"
    provider: ProviderName = "cpu"

    def __init__(self, preprocessor: Preprocessor) -> None:
        self.preprocessor = preprocessor

    def load(self, data: bytes, limits: ImageLimits, probed: ImageHeader | None = None) -> LoadedImage:
        return LoadedImage.from_pil(read_image(data, limits=limits, probed=probed))

    def prepare(self, image: LoadedImage) -> PreparedImage:
        return self.preprocessor.prepare(image.rgb())
