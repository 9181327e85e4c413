"""Slow: the real vit_b architecture through the --checkpoint loading path, parity enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.manifest import load_manifest, sha256_of_file

pytestmark = pytest.mark.slow


def test_vit_b_checkpoint_exports_with_parity(vit_b_model_dir: Path, vit_b_checkpoint: Path) -> None:
    manifest = load_manifest(vit_b_model_dir)
    assert manifest.model_type == "vit_b"
    assert manifest.weights["origin"] == "checkpoint"
    assert manifest.weights["sha256"] == sha256_of_file(vit_b_checkpoint)
    fp32 = manifest.parity["fp32"]
    assert fp32["passed"], fp32["failures"]
    assert fp32["embedding_max_rel"] < 1e-4
    assert min(case["mask_iou_min"] for case in fp32["cases"]) > 0.99
