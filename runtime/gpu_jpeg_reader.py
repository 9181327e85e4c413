"""JPEG decoding straight into GPU memory with NVIDIA nvImageCodec (nvJPEG).

Used only when a GPU provider runs the pre-processing graph and the upload is a JPEG (Pillow's
format ``JPEG``; MPO and every other format stay with Pillow). The header is read first with
Pillow (``runtime.image_files.probe_image``), so the pixel limit and the bomb checks hold before
any device work. nvImageCodec applies the EXIF orientation, as Pillow's path does; its result
is checked against the header's upright size, and anything unexpected (a decode failure, a
12-bit or CMYK JPEG it cannot turn into 8-bit RGB, a pitched buffer) falls back to Pillow.

The package is ``nvidia-nvimgcodec-cu12`` in the default CUDA 12 image (``-cu13`` in the CUDA 13
one; ``requirements-sagemaker-gpu*.txt``); without it (the CPU image, this development machine) ``GpuJpegReader.create`` returns None.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runtime.cuda_runtime import CudaError, CudaRuntime
from runtime.image_files import ImageHeader
from runtime.preprocessors import LoadedImage

log = logging.getLogger(__name__)

#: Pillow format names decoded on the GPU. MPO (multi-picture JPEG) and the rest use Pillow.
GPU_FORMATS = ("JPEG",)


def _image_to_host(image: Any) -> NDArray[np.uint8]:
    return np.asarray(image.cpu())


def read_params(nvimgcodec: Any) -> Any:
    """The nvImageCodec decode parameters: upright (EXIF applied) sRGB. Building them needs
    the wheel but no GPU, so a test checks these names against the pinned release."""
    return nvimgcodec.DecodeParams(apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB)


class GpuJpegReader:
    """Decodes JPEG bytes into a device HxWx3 uint8 RGB buffer (``LoadedImage.device``)."""

    def __init__(self, decoder: Any, params: Any, cuda: CudaRuntime | None) -> None:
        self._decoder = decoder
        self._params = params
        self._cuda = cuda
        self._lock = threading.Lock()

    @classmethod
    def create(cls, device_id: int) -> GpuJpegReader | None:
        """A decoder on CUDA device ``device_id``, or None when nvImageCodec is not installed or fails."""
        try:
            from nvidia import nvimgcodec
        except ImportError:
            log.info("nvImageCodec is not installed: JPEG images are decoded by Pillow on the CPU")
            return None
        try:
            decoder = nvimgcodec.Decoder(device_id=device_id)
            params = read_params(nvimgcodec)
        except Exception as exc:  # noqa: BLE001 - a GPU decoder is an optimization; Pillow remains
            log.warning("nvImageCodec cannot start (%s): JPEG images are decoded by Pillow", exc)
            return None
        log.info("JPEG images are decoded on CUDA device %d by nvImageCodec", device_id)
        return cls(decoder, params, CudaRuntime.load(device_id))

    def read(self, data: bytes, header: ImageHeader) -> LoadedImage | None:
        """The upright RGB image in device memory, or None when the GPU cannot give exactly that."""
        if header.format not in GPU_FORMATS:
            return None
        try:
            with self._lock:
                image = self._decoder.decode(data, params=self._params)
        except Exception as exc:  # noqa: BLE001 - fall back to Pillow, which reports real errors
            log.info("nvImageCodec could not decode a %s image (%s); using Pillow", header.format, exc)
            return None
        if image is None:
            return None
        interface = image.__cuda_array_interface__
        height, width = header.upright_size_hw
        contiguous = interface.get("strides") in (None, (width * 3, 3, 1))
        if tuple(interface["shape"]) != (height, width, 3) or interface["typestr"] != "|u1" or not contiguous:
            log.info("nvImageCodec gave %s %s (strides %s) for a %dx%d image; using Pillow",
                     interface["shape"], interface["typestr"], interface.get("strides"), width, height)
            return None
        if not self._read_finished(interface.get("stream")):
            return None
        return LoadedImage(header.upright_size_hw, device=image, _to_host=_image_to_host)


    def _read_finished(self, stream: int | None) -> bool:
        """Wait for the decode's stream on the decoder's device; False (use Pillow) when that cannot be done."""
        if not stream:
            return True
        if self._cuda is None:
            return False  # cannot order the decode before ONNX Runtime's stream
        try:
            self._cuda.synchronize(int(stream))
        except CudaError as exc:
            log.warning("nvImageCodec's decode could not be awaited (%s); using Pillow", exc)
            return False
        return True


def device_pointer(image: Any) -> int:
    """The device address of an object with ``__cuda_array_interface__``."""
    return int(image.__cuda_array_interface__["data"][0])
