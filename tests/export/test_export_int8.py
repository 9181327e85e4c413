"""``export_sam.py --int8`` and the CPU precision tiers: recorded parity, served tiers, errors."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from PIL import Image

from export.parity import check_parity
from export.quantize import CalibrationError, calibration_images, grid_clicks
from runtime.cpu_backends import AUTO_CPU_BACKENDS
from runtime.cpu_precision import openvino_has_bf16, passes_gate
from runtime.engine import SamEngine
from runtime.errors import ModelLoadError
from runtime.openvino_runner import inference_precision
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.conftest import run_export
from tests.integration.server import start_server
from tests.reference import encode


@pytest.fixture(scope="module")
def int8_model_dir(tiny_int8_model_dir: Path) -> Path:
    """The tiny model (seed 3, the ``tiny_sam`` twin) exported with --int8 (shared with the tier benchmark's smoke run)."""
    return tiny_int8_model_dir


def _manifest(model_dir: Path) -> dict[str, Any]:
    return dict(json.loads((model_dir / "manifest.json").read_text()))


def _embedding(engine: SamEngine) -> np.ndarray:  # type: ignore[type-arg]
    image = Image.fromarray(synthetic_image((300, 400), seed=2))
    return np.asarray(engine.encode(engine.prepare(image)).value)


def test_int8_export_writes_quantised_graphs_and_every_tiers_parity(int8_model_dir: Path) -> None:
    manifest = _manifest(int8_model_dir)
    for role in ("encoder_int8", "decoder_int8"):
        assert manifest["models"][role]["precision"] == "int8"
        graph = onnx.load(str(int8_model_dir / manifest["models"][role]["file"]), load_external_data=False)
        ops = [node.op_type for node in graph.graph.node]
        assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 4, role
    tiers = manifest["parity"]["cpu_tiers"]
    assert tiers["f32"]["mask_iou_worst"] >= 0.99 and tiers["f32"]["passes_gate"]
    for tier in ("int8", "bf16") if openvino_has_bf16() else ("int8",):
        record = tiers[tier]
        assert 0.0 <= record["mask_iou_worst"] <= record["mask_iou_mean"] <= 1.0
        assert record["enforced"] is False  # random weights
        assert record["passes_gate"] == passes_gate(record)


@pytest.mark.parametrize("tier", ["f32", "bf16", "int8"])
def test_each_tier_serves_what_the_export_measured(int8_model_dir: Path, tiny_sam, tier: str) -> None:  # type: ignore[no-untyped-def]
    if tier == "bf16" and not openvino_has_bf16():
        pytest.skip("this CPU has no bf16")
    engine = SamEngine.from_model_dir(int8_model_dir, RuntimeSettings(cpu_precision=tier))  # type: ignore[arg-type]
    assert engine.precision == tier
    assert {role: engine.backends[role] for role in ("encoder", "decoder")} == AUTO_CPU_BACKENDS[tier]  # type: ignore[index]
    recorded = _manifest(int8_model_dir)["parity"]["cpu_tiers"][tier]
    served = check_parity(tiny_sam, engine, tier, enforce=False).to_json()
    assert served["mask_iou_mean"] == pytest.approx(recorded["mask_iou_mean"], abs=1e-6)
    assert served["mask_iou_worst"] == pytest.approx(recorded["mask_iou_worst"], abs=1e-6)
    assert served["embedding_max_rel"] == pytest.approx(recorded["embedding_max_rel"], rel=1e-3, abs=1e-7)


def test_int8_and_bf16_really_change_the_numbers(int8_model_dir: Path) -> None:
    f32 = _embedding(SamEngine.from_model_dir(int8_model_dir, RuntimeSettings(cpu_precision="f32")))
    int8 = _embedding(SamEngine.from_model_dir(int8_model_dir, RuntimeSettings(cpu_precision="int8")))
    assert not np.array_equal(f32, int8)
    assert np.max(np.abs(f32 - int8)) / np.max(np.abs(f32)) < 0.5  # quantised, not broken


def test_auto_stays_f32_for_random_weights_and_runs_a_passing_tier_for_real_ones(int8_model_dir: Path,
                                                                                 tmp_path: Path) -> None:
    assert SamEngine.from_model_dir(int8_model_dir, RuntimeSettings()).precision == "f32"
    model = tmp_path / "model"
    shutil.copytree(int8_model_dir, model)
    manifest = _manifest(model)
    manifest["weights"] = {"origin": "checkpoint", "file": "trained.pth"}
    manifest["parity"]["cpu_tiers"]["bf16"] = {"mask_iou_mean": 0.97, "mask_iou_worst": 0.99}  # fails the mean
    manifest["parity"]["cpu_tiers"]["int8"] = {"mask_iou_mean": 0.99, "mask_iou_worst": 0.96}
    (model / "manifest.json").write_text(json.dumps(manifest))
    auto = SamEngine.from_model_dir(model, RuntimeSettings())
    assert auto.precision == "int8"
    int8 = SamEngine.from_model_dir(model, RuntimeSettings(cpu_precision="int8"))
    assert np.array_equal(_embedding(auto), _embedding(int8))


def test_int8_without_int8_graphs_is_a_start_up_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="SAM_CPU_PRECISION=int8 cannot run: the model directory has no int8 graphs"):
        SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_precision="int8"))
    with pytest.raises(ModelLoadError, match="SAM_CPU_PRECISION=bf16 cannot run: bf16 runs on OpenVINO"):
        SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_precision="bf16", cpu_engine="onnxruntime"))


def test_the_precision_is_in_the_log_stats_and_every_answer(int8_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(int8_model_dir, tmp_path / "s.log", {"SAM_CPU_PRECISION": "int8"})
    try:
        assert httpx.get(server.url + "/stats", timeout=30).json()["precision"] == "int8"
        body = {"image_base64": base64.b64encode(encode(synthetic_image((300, 400), 1))).decode(),
                "points": [{"x": 100, "y": 100}]}
        response = httpx.post(server.url + "/invocations", json=body, timeout=120)
        assert response.status_code == 200 and response.json()["precision"] == "int8"
        assert "precision=int8" in response.headers["X-Amzn-SageMaker-Custom-Attributes"]
        png = httpx.post(server.url + "/invocations", json=body, headers={"Accept": "image/png"}, timeout=120)
        assert png.status_code == 200 and "precision=int8" in png.headers["X-Amzn-SageMaker-Custom-Attributes"]
    finally:
        assert server.stop() == 0
    ready = [json.loads(line) for line in server.logs().splitlines() if '"model ready"' in line]
    assert ready and ready[0]["precision"] == "int8"


def test_calibration_dir_errors_are_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_export("--model-type", "tiny", "--random-weights", "--int8", "--calibration-dir", str(empty),
                        "--output", str(tmp_path / "o"))
    assert result.returncode == 1 and f"--calibration-dir {empty} holds no .jpg/.jpeg/.png photos" in result.stderr
    result = run_export("--model-type", "tiny", "--random-weights", "--calibration-dir", str(empty),
                        "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "--calibration-dir only applies with --int8" in result.stderr


def test_calibration_images_are_the_dirs_photos_upright_rgb(tmp_path: Path) -> None:
    Image.new("L", (40, 30), 7).save(tmp_path / "b.png")
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "a.JPG")
    (tmp_path / "notes.txt").write_text("not a photo")
    images = calibration_images(tmp_path)
    assert [(i.mode, i.size) for i in images] == [("RGB", (20, 10)), ("RGB", (40, 30))]
    (tmp_path / "c.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CalibrationError, match="c.png cannot be read"):
        calibration_images(tmp_path)
    assert len(calibration_images(None)) == 4


def test_grid_clicks_cover_the_image() -> None:
    clicks = grid_clicks((300, 600), 3)
    assert [(c.x, c.y) for c in clicks[:4]] == [(100.0, 50.0), (300.0, 50.0), (500.0, 50.0), (100.0, 150.0)]
    assert all(c.label == 1 for c in clicks) and len(clicks) == 9


def test_openvino_compiles_each_graph_at_its_tiers_inference_precision(int8_model_dir: Path) -> None:
    """bf16: both graphs in bf16; int8: the layers left in float in bf16 where the CPU has it; the
    decoder's static-shape variant (one prompt of 2 points) alike, and it answers as the dynamic one."""
    tiers = ("f32", "bf16", "int8") if openvino_has_bf16() else ("f32", "int8")
    for tier in tiers:
        engine = SamEngine.from_model_dir(int8_model_dir, RuntimeSettings(cpu_precision=tier, cpu_engine="openvino"))  # type: ignore[arg-type]
        decoder = engine.decoder
        graphs = [engine.encoder._compiled, decoder._compiled, decoder.compiled_for(1, 2)]  # type: ignore[attr-defined]
        assert decoder.compiled_for(1, 3) is graphs[1]  # type: ignore[attr-defined]
        assert (graphs[2] is graphs[1]) == (tier == "f32"), tier  # f32 keeps the graph its parity was proven on
        for graph in graphs:
            assert graph.get_property("INFERENCE_PRECISION_HINT").to_string() == inference_precision(tier, openvino_has_bf16())  # type: ignore[arg-type]
        embedding = _embedding(engine)
        feeds = {"point_coords": np.array([[[40.0, 60.0], [0.0, 0.0]]], np.float32),
                 "point_labels": np.array([[1.0, -1.0]], np.float32),
                 "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32)}
        static = graphs[2].create_infer_request().infer({"image_embeddings": embedding, **feeds})
        dynamic = graphs[1].create_infer_request().infer({"image_embeddings": embedding, **feeds})
        static_logits, dynamic_logits = (np.asarray(out[g.output("low_res_masks")]) for out, g in
                                         ((static, graphs[2]), (dynamic, graphs[1])))
        scale = float(np.max(np.abs(dynamic_logits)))
        assert scale > 0 and float(np.max(np.abs(static_logits - dynamic_logits))) <= 0.05 * scale, tier
    assert inference_precision("int8", True) == "bf16" and inference_precision("int8", False) == "f32"
