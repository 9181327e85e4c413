"""``make web-runtime`` (``python -m scripts.build_web_runtime``): onnxruntime-web from the npm registry into ``serving/static/ort``.

1. ``web/package.json`` and ``web/package-lock.json`` are copied into a build directory
   (``out/web-runtime-build``, gitignored) and ``npm ci --ignore-scripts`` installs exactly the
   lock's versions there; npm checks every tarball against the lock's sha512 ``integrity``.
2. The installed onnxruntime-web must be the lock's version.
3. Only ``serving.web_runtime.WEB_RUNTIME_FILES`` are copied into ``WEB_RUNTIME_DIR`` (emptied
   first), with a record of the version and each file's sha256.

Needs ``npm`` (Debian's nodejs and npm packages; .ci/run installs them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from serving.web_runtime import WEB_RUNTIME_DIR, WEB_RUNTIME_FILES, WEB_RUNTIME_PACKAGE, WEB_RUNTIME_RECORD

REPO = Path(__file__).resolve().parents[1]

PACKAGE_DIR = REPO / "web"
BUILD_DIR = REPO / "out" / "web-runtime-build"
NPM_TIMEOUT_S = 600


class BuildError(RuntimeError):
    """The runtime could not be installed; the message says why."""


def locked_version(package_dir: Path = PACKAGE_DIR) -> str:
    """The onnxruntime-web version ``package-lock.json`` pins."""
    lock = json.loads((package_dir / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{WEB_RUNTIME_PACKAGE}"]["version"])


def npm_ci(build_dir: Path, package_dir: Path = PACKAGE_DIR) -> Path:
    """Install the lock's packages in ``build_dir``; return the package's ``dist`` directory."""
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("npm is not installed (apt-get install nodejs npm)")
    build_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(package_dir / name, build_dir / name)
    done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=build_dir, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise BuildError(f"npm ci failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    installed = build_dir / "node_modules" / WEB_RUNTIME_PACKAGE
    version = json.loads((installed / "package.json").read_text())["version"]
    if version != locked_version(package_dir):
        raise BuildError(f"npm installed {WEB_RUNTIME_PACKAGE} {version}, the lock pins {locked_version(package_dir)}")
    return installed / "dist"


def copy_runtime(dist: Path, target: Path, version: str) -> dict[str, str]:
    """Copy the page's files from ``dist`` into ``target`` (emptied first); return {file: sha256}."""
    absent = [name for name in WEB_RUNTIME_FILES if not (dist / name).is_file()]
    if absent:
        raise BuildError(f"{WEB_RUNTIME_PACKAGE} {version} has no {', '.join(absent)} in {dist}")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    digests = {}
    for name in WEB_RUNTIME_FILES:
        shutil.copyfile(dist / name, target / name)
        digests[name] = hashlib.sha256((target / name).read_bytes()).hexdigest()
    record = {"package": WEB_RUNTIME_PACKAGE, "version": version, "sha256": digests}
    (target / WEB_RUNTIME_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return digests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    parser.add_argument("--target", type=Path, default=WEB_RUNTIME_DIR)
    args = parser.parse_args(argv)
    try:
        dist = npm_ci(args.build_dir)
        digests = copy_runtime(dist, args.target, locked_version())
    except (BuildError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"web-runtime: {exc}", file=sys.stderr)
        return 1
    size = sum((args.target / name).stat().st_size for name in digests)
    print(f"web-runtime: {WEB_RUNTIME_PACKAGE} {locked_version()} -> {args.target} "
          f"({len(digests)} files, {size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
