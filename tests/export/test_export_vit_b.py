"""Slow: the real vit_b architecture through the --checkpoint loading path, parity enforced."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from export.sam_models import build_random
from runtime.manifest import load_manifest, sha256_of_file
from tests.conftest import run_export

pytestmark = pytest.mark.slow


def test_vit_b_checkpoint_exports_with_parity(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam_vit_b_random.pth"
    torch.save(build_random("vit_b", 11).state_dict(), checkpoint)
    out = tmp_path / "vit_b"
    result = run_export("--model-type", "vit_b", "--checkpoint", str(checkpoint), "--output", str(out))
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(out)
    assert manifest.weights["origin"] == "checkpoint"
    assert manifest.weights["sha256"] == sha256_of_file(checkpoint)
    fp32 = manifest.parity["fp32"]
    assert fp32["passed"], fp32["failures"]
    assert fp32["embedding_max_rel"] < 1e-4
    assert min(case["mask_iou_min"] for case in fp32["cases"]) > 0.99
