"""The few CUDA runtime calls the GPU path makes itself, through ``ctypes`` on the loaded libcudart.

ONNX Runtime's ``preload_dlls`` (``runtime.ort_runner.preload_gpu_libraries``) loads
``libcudart.so.12`` (or ``.13``) from the NVIDIA wheels first, so ``dlopen`` by soname finds
that copy. Every call names its device: CUDA's "current device" is per thread, and a request
runs on any of the server's worker threads.
"""

from __future__ import annotations

import ctypes
from typing import Any

CUDART_SONAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so")


class CudaError(RuntimeError):
    """A CUDA runtime call returned an error code."""


class CudaRuntime:
    """``cudaSetDevice``, ``cudaStreamSynchronize`` and ``cudaMemGetInfo`` on one device."""

    def __init__(self, library: Any, device_id: int) -> None:
        self._library = library
        self.device_id = device_id
        library.cudaSetDevice.argtypes = [ctypes.c_int]
        library.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        library.cudaMemGetInfo.argtypes = [ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
        for function in (library.cudaSetDevice, library.cudaStreamSynchronize, library.cudaMemGetInfo):
            function.restype = ctypes.c_int

    @classmethod
    def load(cls, device_id: int) -> CudaRuntime | None:
        """The runtime ONNX Runtime loaded, or None when no libcudart can be loaded."""
        for name in CUDART_SONAMES:
            try:
                return cls(ctypes.CDLL(name), device_id)
            except (OSError, AttributeError):
                continue
        return None

    def _check(self, what: str, code: int) -> None:
        if code != 0:
            raise CudaError(f"{what} on CUDA device {self.device_id} failed with cudaError {code}")

    def synchronize(self, stream: int) -> None:
        """Wait for ``stream`` of this device (a handle, or 1/2 for the legacy/per-thread default stream)."""
        self._check("cudaSetDevice", self._library.cudaSetDevice(self.device_id))
        self._check("cudaStreamSynchronize", self._library.cudaStreamSynchronize(ctypes.c_void_p(stream)))

    def memory_bytes(self) -> tuple[int, int]:
        """(free, total) bytes of this device's memory."""
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._check("cudaSetDevice", self._library.cudaSetDevice(self.device_id))
        self._check("cudaMemGetInfo", self._library.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)))
        return int(free.value), int(total.value)
