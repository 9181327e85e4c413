"""Where a tensor lives: a host numpy array, or an ONNX Runtime ``OrtValue`` on the device.

On a GPU provider the embedding, the decoder's logits and the encoder's input stay on the
device as ``OrtValue``s bound between sessions (IO binding); on CPU they are numpy arrays.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

#: float32 tensor on the host (numpy) or on the device (``OrtValue``).
HostOrDevice: TypeAlias = NDArray[np.float32] | ort.OrtValue
#: An image embedding, float32 1x256x64x64 (see ``Manifest.embedding_shape``).
EmbeddingValue: TypeAlias = HostOrDevice
#: The decoder's low-res mask logits, float32 PxTxLxL (P prompts, T mask tokens, L = 256).
LogitsValue: TypeAlias = HostOrDevice


def shape_of(value: HostOrDevice) -> tuple[int, ...]:
    """The shape of a numpy array or an ``OrtValue``."""
    if isinstance(value, ort.OrtValue):
        return tuple(int(d) for d in value.shape())
    return tuple(int(d) for d in value.shape)


def to_host(value: HostOrDevice) -> NDArray[Any]:
    """A numpy array of ``value`` (a copy from the device for an ``OrtValue``)."""
    if isinstance(value, ort.OrtValue):
        return np.asarray(value.numpy())
    return value


def on_device(value: HostOrDevice) -> bool:
    """Whether ``value`` is an ``OrtValue`` in device (not host) memory."""
    return isinstance(value, ort.OrtValue) and value.device_name().lower() != "cpu"
