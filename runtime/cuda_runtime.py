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


#: ``cudaHostAlloc`` flags: ``cudaHostAllocDefault`` (page-locked, usable by the device's copies).
CUDA_HOST_ALLOC_DEFAULT = 0


class CudaRuntime:
    """``cudaSetDevice``, ``cudaStreamSynchronize``, ``cudaMemGetInfo`` and page-locked host memory
    (``cudaHostAlloc`` / ``cudaFreeHost``) on one device."""

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

    def host_alloc(self, nbytes: int) -> int:
        """The address of ``nbytes`` of new page-locked (pinned) host memory; ``free_host`` frees it."""
        library = self._library
        library.cudaHostAlloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_uint]
        library.cudaHostAlloc.restype = ctypes.c_int
        address = ctypes.c_void_p()
        self._check("cudaSetDevice", library.cudaSetDevice(self.device_id))
        self._check(f"cudaHostAlloc of {nbytes} bytes",
                    library.cudaHostAlloc(ctypes.byref(address), nbytes, CUDA_HOST_ALLOC_DEFAULT))
        if not address.value:
            raise CudaError(f"cudaHostAlloc of {nbytes} bytes on CUDA device {self.device_id} gave no memory")
        return int(address.value)

    def free_host(self, address: int) -> None:
        """Free page-locked host memory that ``host_alloc`` gave."""
        self._library.cudaFreeHost.argtypes = [ctypes.c_void_p]
        self._library.cudaFreeHost.restype = ctypes.c_int
        self._check("cudaFreeHost", self._library.cudaFreeHost(ctypes.c_void_p(address)))
