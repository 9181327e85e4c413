"""Slow: the engine on vit_b (random-weights checkpoint) reproduces the old service's masks."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from export.sam_models import load_checkpoint
from runtime.cpu_backends import CpuBackendSetting
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.masks import mask_iou
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode, old_service_masks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rotated_photo(vit_b_checkpoint: Path) -> dict[str, object]:
    """A rotated portrait JPEG, 5 clicks, and the old service's masks for them in PyTorch."""
    sam = load_checkpoint("vit_b", vit_b_checkpoint)
    upright = synthetic_image((1400, 1050), seed=21)  # portrait, larger than 1024
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))), "JPEG", quality=90, exif=exif)
    image = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    rng = np.random.default_rng(4)
    clicks = tuple(Click(float(rng.uniform(0, 1050)), float(rng.uniform(0, 1400))) for _ in range(5))
    with torch.no_grad():
        union, per_click = old_service_masks(sam, image, [(c.x, c.y) for c in clicks])
    return {"data": data, "clicks": clicks, "union": union, "per_click": per_click}


@pytest.mark.parametrize("cpu_engine", ["onnxruntime", "openvino"])
def test_vit_b_matches_old_service_on_a_rotated_portrait_photo(vit_b_model_dir: Path, rotated_photo: dict[str, Any],
                                                                cpu_engine: CpuBackendSetting) -> None:
    # f32: the parity this test holds to (>= 0.99 per click); a checkpoint's auto may pick a lower
    # tier, which is held to its own gate (runtime.cpu_precision.PARITY_GATE) by the export.
    extractor = HoldExtractor.from_model_dir(vit_b_model_dir, RuntimeSettings(cpu_engine=cpu_engine, cpu_precision="f32"))
    assert extractor.engine.backends["encoder"] == cpu_engine and extractor.engine.precision == "f32"
    clicks = rotated_photo["clicks"]
    per_click = rotated_photo["per_click"]
    result = extractor.extract(ExtractRequest(clicks, image_bytes=rotated_photo["data"],
                                              options=ExtractOptions(per_click_masks=True)))
    assert result.prompt_masks is not None
    ious = [mask_iou(got, expected) for got, expected in zip(result.prompt_masks, per_click)]
    assert min(ious) >= 0.99, ious
    assert mask_iou(result.mask, rotated_photo["union"]) >= 0.99
    followup = extractor.extract(ExtractRequest(clicks[:1], image_id=result.image_id, need_pixels=False))
    assert followup.cache_hit and "encoder_ms" not in followup.timings_ms
    assert mask_iou(followup.mask, per_click[0]) >= 0.99
