"""buildah with a private, throw-away storage root (no Docker engine is needed).

Every call runs ``buildah --root ROOT/storage --runroot ROOT/run --storage-driver vfs ...``:
vfs works on any file system (no overlay mounts) but copies every layer in full, so images
are built with ``--layers=false`` and the whole root is deleted by ``cleanup()``. Builds run
with ``--isolation chroot --network host`` (pip inside reaches the package index through the
host's network); ``podman run`` cannot set its rlimits on these machines, so containers run
with ``buildah run --isolation chroot --network host``: their processes are host processes
that see the image's root file system.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class BuildahError(RuntimeError):
    """A buildah command failed; the message carries its output."""


class Buildah:
    """buildah commands against the storage under ``root`` (created here, removed by ``cleanup``)."""

    def __init__(self, root: Path, executable: str = "buildah") -> None:
        path = shutil.which(executable)
        if path is None:
            raise BuildahError("buildah is not installed: apt-get install -y buildah debootstrap")
        self.root = root
        self.executable = path
        (root / "storage").mkdir(parents=True, exist_ok=True)
        (root / "run").mkdir(parents=True, exist_ok=True)

    def argv(self, *args: str) -> list[str]:
        return [self.executable, "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
                "--storage-driver", "vfs", *args]

    def call(self, *args: str, timeout: float = 600, log: Path | None = None) -> str:
        """Run one buildah command; its stdout, or ``BuildahError`` with the output's tail."""
        if log is not None:
            with log.open("w") as out:
                result = subprocess.run(self.argv(*args), stdout=out, stderr=subprocess.STDOUT, text=True,
                                        timeout=timeout, check=False)
            output = log.read_text(errors="replace")
        else:
            result = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, check=False)
            output = result.stdout + result.stderr
        if result.returncode != 0:
            raise BuildahError(f"buildah {' '.join(args[:2])} failed ({result.returncode}):\n{output[-4000:]}")
        return result.stdout if log is None else output

    def import_rootfs(self, tarball: Path, image: str, env: Mapping[str, str], cmd: Sequence[str]) -> None:
        """Make ``image`` from a root file system tarball, with ``env`` and ``cmd`` in its config."""
        container = self.call("from", "scratch").strip()
        try:
            self.call("add", container, str(tarball), "/")
            options = [item for key, value in env.items() for item in ("--env", f"{key}={value}")]
            self.call("config", *options, "--cmd", json.dumps(list(cmd)), container)
            self.call("commit", container, image)
        finally:
            self.call("rm", container)

    def build(self, dockerfile: Path, context: Path, image: str, build_args: Mapping[str, str], log: Path,
              timeout: float = 3600) -> None:
        """``buildah bud`` of ``dockerfile``, output to ``log``."""
        options = [item for key, value in build_args.items() for item in ("--build-arg", f"{key}={value}")]
        self.call("bud", "--isolation", "chroot", "--network", "host", "--layers=false", "-f", str(dockerfile),
                  *options, "-t", image, str(context), timeout=timeout, log=log)

    def image_config(self, image: str) -> dict[str, Any]:
        """The image's OCI config: Entrypoint, Cmd, Env, User, WorkingDir, Labels."""
        config: dict[str, Any] = json.loads(self.call("inspect", "--type", "image", image))["OCIv1"]["config"]
        return config

    def image_size(self, image: str) -> int:
        """Uncompressed size of the image's layers in bytes (what ``docker images`` shows)."""
        manifest = json.loads(json.loads(self.call("inspect", "--type", "image", image))["Manifest"])
        return sum(int(layer["size"]) for layer in manifest["layers"])

    def container(self, image: str) -> str:
        """A working container of ``image``; its name."""
        return self.call("from", image).strip()

    def mount(self, container: str) -> Path:
        """The container's root file system on the host (read it; do not write)."""
        return Path(self.call("mount", container).strip())

    def run_argv(self, container: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 volumes: Sequence[str] = (), user: str | None = None) -> list[str]:
        """The command line that runs ``argv`` in ``container`` with the image's config (env, user, workdir)."""
        options = ["--isolation", "chroot", "--network", "host"]
        options += [item for key, value in (env or {}).items() for item in ("--env", f"{key}={value}")]
        options += [item for volume in volumes for item in ("--volume", volume)]
        if user is not None:
            options += ["--user", user]
        return self.argv("run", *options, container, "--", *argv)

    def run(self, container: str, argv: Sequence[str], env: Mapping[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``container`` to completion; stdout and stderr captured separately."""
        return subprocess.run(self.run_argv(container, argv, env), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def cleanup(self) -> None:
        """Remove every container and image, then the whole storage root."""
        for args in (("rm", "--all"), ("rmi", "--all", "--force")):
            subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=600, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
