"""make web-runtime (scripts/build_web_runtime.py): the lock pins what the page loads, and only those
files are copied, with a record the server reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from scripts.build_web_runtime import PACKAGE_DIR, BuildError, copy_runtime, locked_version
from serving.web_runtime import WEB_RUNTIME_FILES, WEB_RUNTIME_PACKAGE, WEB_RUNTIME_RECORD, web_runtime_status


def test_the_lock_pins_onnxruntime_web_with_integrity_hashes() -> None:
    package = json.loads((PACKAGE_DIR / "package.json").read_text())
    assert package["dependencies"] == {WEB_RUNTIME_PACKAGE: "1.30.0"}  # exact, no range
    lock = json.loads((PACKAGE_DIR / "package-lock.json").read_text())
    assert locked_version() == "1.30.0" and lock["lockfileVersion"] == 3
    installed = {path: entry for path, entry in lock["packages"].items() if path}
    assert installed and all(entry["integrity"].startswith("sha512-") for entry in installed.values())
    assert installed["node_modules/onnxruntime-web"]["integrity"] == (
        "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ==")


def test_only_the_pages_files_are_copied_with_their_record(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    for name in (*WEB_RUNTIME_FILES, "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.jsep.wasm"):
        (dist / name).write_bytes(name.encode())
    target = tmp_path / "ort"
    target.mkdir()
    (target / "stale.mjs").write_text("from an older build")
    digests = copy_runtime(dist, target, "1.30.0")
    assert sorted(p.name for p in target.iterdir()) == sorted((*WEB_RUNTIME_FILES, WEB_RUNTIME_RECORD))
    record = json.loads((target / WEB_RUNTIME_RECORD).read_text())
    assert record == {"package": WEB_RUNTIME_PACKAGE, "version": "1.30.0", "sha256": digests}
    assert digests == {name: hashlib.sha256(name.encode()).hexdigest() for name in WEB_RUNTIME_FILES}
    status = web_runtime_status(target)
    assert status.available and status.version == "1.30.0"


def test_a_package_without_a_needed_file_is_refused_by_name(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / WEB_RUNTIME_FILES[0]).write_text("module")
    with pytest.raises(BuildError, match="has no ort-wasm-simd-threaded.mjs, ort-wasm-simd-threaded.wasm"):
        copy_runtime(dist, tmp_path / "ort", "1.30.0")
    assert not (tmp_path / "ort").exists()
