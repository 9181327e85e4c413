"""A stand-in for ``python:3.11-slim`` made from Debian packages, for building the image without Docker Hub.

``debootstrap --variant=minbase`` installs Debian bookworm (Python 3.11) with ``python3``,
``python3-venv`` and ``ca-certificates``; a virtual environment at ``/opt/python`` comes first
on ``PATH``, so ``python`` and ``pip`` work as in the official image and ``pip install`` is
not blocked by Debian's PEP 668 marker. Its site-packages is not where ``python:3.11-slim``
keeps it, which is the point: ``Dockerfile.sagemaker`` must not depend on that path. The
host's CA bundle replaces the image's, so pip inside the build trusts what the host trusts.
The result is passed to ``Dockerfile.sagemaker`` through its ``PYTHON_IMAGE`` build argument.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from scripts.container.buildah import Buildah

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
VENV = "/opt/python"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ENV = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "PIP_CERT": str(HOST_CA_BUNDLE),
}


def debootstrap(rootfs: Path, mirror: str, log: Path) -> None:
    """Debian ``SUITE`` (minbase) with ``PACKAGES`` into ``rootfs``."""
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: apt-get install -y buildah debootstrap")
    with log.open("w") as out:
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs),
                        mirror], stdout=out, stderr=subprocess.STDOUT, check=True, timeout=1800)


def finish_rootfs(rootfs: Path) -> None:
    """The virtual environment, the host's CA bundle, and no apt caches."""
    subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", VENV], check=True, timeout=300)
    shutil.copyfile(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.relative_to("/"))
    for cache in (rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"):
        for entry in cache.glob("*"):
            if entry.is_file():
                entry.unlink()


def build_standin_base(buildah: Buildah, workdir: Path, image: str,
                       mirror: str = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")) -> None:
    """Build the stand-in base as ``image`` in ``buildah``'s storage; the root file system is removed afterwards."""
    rootfs, tarball = workdir / "standin-rootfs", workdir / "standin-rootfs.tar"
    try:
        debootstrap(rootfs, mirror, workdir / "debootstrap.log")
        finish_rootfs(rootfs)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True, timeout=600)
        buildah.import_rootfs(tarball, image, ENV, ["python"])
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
        tarball.unlink(missing_ok=True)
