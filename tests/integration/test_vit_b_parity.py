"""Slow: the engine on vit_b (random-weights checkpoint) reproduces the old service's masks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from export.parity import synthetic_image
from export.sam_models import load_checkpoint
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from tests.reference import encode, mask_iou, old_service_masks

pytestmark = pytest.mark.slow


def test_vit_b_matches_old_service_on_a_rotated_portrait_photo(vit_b_model_dir: Path, vit_b_checkpoint: Path) -> None:
    sam = load_checkpoint("vit_b", vit_b_checkpoint)
    extractor = HoldExtractor.from_model_dir(vit_b_model_dir, RuntimeSettings())
    upright = synthetic_image((1400, 1050), seed=21)  # portrait, larger than 1024
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))), "JPEG", quality=90, exif=exif)
    image = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    rng = np.random.default_rng(4)
    clicks = tuple(Click(float(rng.uniform(0, 1050)), float(rng.uniform(0, 1400))) for _ in range(5))
    result = extractor.extract(ExtractRequest(clicks, image_bytes=data, options=ExtractOptions(per_click_masks=True)))
    with torch.no_grad():
        union, per_click = old_service_masks(sam, image, [(c.x, c.y) for c in clicks])
    assert result.prompt_masks is not None
    ious = [mask_iou(got, expected) for got, expected in zip(result.prompt_masks, per_click)]
    assert min(ious) >= 0.99, ious
    assert mask_iou(result.mask, union) >= 0.99
    followup = extractor.extract(ExtractRequest(clicks[:1], image_id=result.image_id, need_pixels=False))
    assert followup.cache_hit and "encoder_ms" not in followup.timings_ms
    assert mask_iou(followup.mask, per_click[0]) >= 0.99
