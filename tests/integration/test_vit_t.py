"""MobileSAM (vit_t) is a model type like any other: export, parity, extraction, serving."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from export.sam_models import build_random, predictor_for
from runtime.cpu_backends import CpuBackendSetting
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.manifest import load_manifest
from runtime.masks import mask_iou
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.conftest import run_export
from tests.integration.server import start_server
from tests.reference import decode_mask, encode, in_process_mask, old_service_masks


def test_vit_t_export_records_parity_against_mobilesam(vit_t_model_dir: Path) -> None:
    manifest = load_manifest(vit_t_model_dir)
    assert manifest.model_type == "vit_t" and manifest.versions["mobilesam-mirror"] == "1.0.0"
    fp32 = manifest.parity["fp32"]
    assert fp32["passed"] and fp32["embedding_max_rel"] < 1e-4
    assert min(case["mask_iou_min"] for case in fp32["cases"]) > 0.999


@pytest.mark.parametrize("cpu_engine", ["onnxruntime", "openvino"])
def test_vit_t_extraction_matches_mobilesam_old_service(vit_t_model_dir: Path, cpu_engine: CpuBackendSetting) -> None:
    sam = build_random("vit_t", 5)
    extractor = HoldExtractor.from_model_dir(vit_t_model_dir, RuntimeSettings(cpu_engine=cpu_engine))
    assert {k: extractor.engine.backends[k] for k in ("encoder", "decoder")} == {"encoder": cpu_engine, "decoder": cpu_engine}
    upright = synthetic_image((900, 700), seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))), "JPEG", quality=92, exif=exif)
    image = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    clicks = (Click(100.0, 200.0), Click(600.0, 800.0), Click(350.0, 450.0))
    result = extractor.extract(ExtractRequest(clicks, image_bytes=data, options=ExtractOptions(per_click_masks=True)))
    with torch.no_grad():
        union, per_click = old_service_masks(sam, image, [(c.x, c.y) for c in clicks],
                                             predictor=_predictor(sam, image))
    assert result.prompt_masks is not None
    assert min(mask_iou(a, b) for a, b in zip(result.prompt_masks, per_click)) >= 0.99
    assert mask_iou(result.mask, union) >= 0.99


def _predictor(sam, image):  # type: ignore[no-untyped-def]
    predictor = predictor_for("vit_t", sam)
    with torch.no_grad():
        predictor.set_image(image)
    return predictor


def test_vit_t_serves(vit_t_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(vit_t_model_dir, tmp_path / "s.log")
    try:
        image = encode(synthetic_image((300, 400), 1))
        body = {"image_base64": base64.b64encode(image).decode(), "points": [{"x": 100, "y": 100}]}
        response = httpx.post(server.url + "/invocations", json=body, timeout=60)
        assert response.status_code == 200
        served = decode_mask(response.json()["mask_image_base64"])
        assert np.array_equal(served, in_process_mask(vit_t_model_dir, image, [(100, 100)]))
        assert httpx.get(server.url + "/stats").json()["model_type"] == "vit_t"
    finally:
        assert server.stop() == 0


def test_vit_t_checkpoint_given_as_vit_b_is_named(tmp_path: Path) -> None:
    checkpoint = tmp_path / "mobile_sam.pt"
    torch.save(build_random("vit_t", 0).state_dict(), checkpoint)
    result = run_export("--model-type", "vit_b", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "o"))
    assert result.returncode == 1 and "is a vit_t checkpoint, not vit_b" in result.stderr
