"""Download of official SAM checkpoints into a cache directory, verified by SHA-256."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from runtime.manifest import sha256_of_file

#: Where downloaded checkpoints are kept; override with SAM_CHECKPOINT_CACHE.
DEFAULT_CACHE = Path.home() / ".cache" / "sam-holds" / "checkpoints"


class CheckpointDownloadError(RuntimeError):
    """The checkpoint could not be fetched or failed its checksum."""


def mirrored(url: str, environ: os._Environ[str] | dict[str, str] = os.environ) -> str:
    """``url`` on the mirror named by ``SAM_CHECKPOINT_MIRROR`` (a base URL), if one is set."""
    mirror = environ.get("SAM_CHECKPOINT_MIRROR")
    return mirror.rstrip("/") + "/" + url.rsplit("/", 1)[-1] if mirror else url


def cache_dir(environ: os._Environ[str] | dict[str, str] = os.environ) -> Path:
    """The checkpoint cache directory (``SAM_CHECKPOINT_CACHE`` or ``~/.cache/sam-holds``)."""
    configured = environ.get("SAM_CHECKPOINT_CACHE")
    return Path(configured) if configured else DEFAULT_CACHE


def fetch_checkpoint(url: str, sha256: str, directory: Path, timeout_s: float = 30.0) -> Path:
    """Return a verified local copy of ``url``, downloading it with a progress bar if needed.

    A cached file with the right SHA-256 is reused; a wrong one is replaced. The download
    goes to a ``.part`` file that is renamed only after the checksum matches.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / url.rsplit("/", 1)[-1]
    if target.is_file():
        if sha256_of_file(target) == sha256:
            return target
        target.unlink()
    partial = target.with_suffix(target.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with partial.open("wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name
            ) as progress:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    progress.update(len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise CheckpointDownloadError(
            f"could not download {url}: {exc}. Without internet access, download the file "
            f"elsewhere and pass it with --checkpoint PATH (or use --random-weights for a test model)."
        ) from exc
    digest = sha256_of_file(partial)
    if digest != sha256:
        partial.unlink(missing_ok=True)
        raise CheckpointDownloadError(f"{url} downloaded with SHA-256 {digest}, expected {sha256}")
    partial.rename(target)
    return target
