"""Print the directories that hold the NVIDIA wheels' shared libraries, one per line.

``Dockerfile.sagemaker`` runs this with the image's own Python while building the GPU image
and writes the output to ``/etc/ld.so.conf.d/sam-gpu-libraries.conf`` before ``ldconfig``,
so that ``libnvinfer.so.10``, ``libcudnn.so.9``, ``libcublas.so.12`` ... resolve by name for
every loader (ONNX Runtime's providers, ``ctypes``) without ``LD_LIBRARY_PATH``. The
site-packages directories come from ``sysconfig``: the image does not depend on where its
base image puts them (``python:3.11-slim``: /usr/local/lib/python3.11/site-packages; the
Debian stand-in of ``make container-test``: a virtual environment). No dependencies.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

PACKAGES = ("nvidia", "tensorrt_libs")  # CUDA, cuBLAS, cuDNN, ... wheels; tensorrt-cu1x-libs


def library_dirs(site_dirs: list[str]) -> list[str]:
    """Sorted directories below ``<site>/nvidia`` and ``<site>/tensorrt_libs`` that contain ``lib*.so*`` files."""
    found: set[str] = set()
    for site in site_dirs:
        for package in PACKAGES:
            root = Path(site) / package
            if root.is_dir():
                found.update(str(path.parent) for path in root.rglob("lib*.so*") if path.is_file())
    return sorted(found)


def main(argv: list[str]) -> int:
    sites = argv or sorted({sysconfig.get_path("platlib"), sysconfig.get_path("purelib")})
    dirs = library_dirs(sites)
    if not dirs:
        print(f"no NVIDIA libraries found under {', '.join(sites)}", file=sys.stderr)
        return 1
    print("\n".join(dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
