"""README.md's "Pre-warming the shared tier" block, run as written (the harness of test_readme_examples)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.integration.server import REPO
from tests.integration.test_readme_examples import block_with, phone_photo, run_steps, sandbox  # noqa: F401


def test_readme_prewarm_example(tiny_model_dir: Path, phone_photo: bytes, tmp_path: Path) -> None:  # noqa: F811
    root = sandbox(tmp_path / "repo", tiny_model_dir, phone_photo)
    block = block_with(REPO / "README.md", "bash", "redis-server", "warm=true", "--port 8081")
    out = run_steps(root, [("warm", block)])["warm"].stdout.splitlines()
    lines = [json.loads(line) for line in out if line.startswith("{")]
    image_id = hashlib.sha256(phone_photo).hexdigest()[:32]
    stored, present, tap, stats = lines
    assert stored["image_id"] == image_id and stored["outcome"] == "stored" and stored["stored_bytes"] > len(phone_photo)
    assert present == {"outcome": "already_present"}
    assert tap == {"image_id": image_id, "cache_hit": True, "encoder_ms": None}
    assert stats == {"encoder_runs": 1, "shared_hits": 1}  # the warm-up's run only
