"""The export CLI: files, manifest, parity gate, bad input (tiny model, real subprocesses)."""

from __future__ import annotations

import http.server
import json
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from export.checkpoints import CheckpointDownloadError, fetch_checkpoint
from export.export_sam import main as export_main
from export.sam_models import build_random
from runtime.engine import SamEngine
from runtime.manifest import DECODER_INPUTS, DECODER_OUTPUTS, load_manifest, sha256_of_file
from runtime.settings import RuntimeSettings
from serving.local_endpoint import free_port
from synthetic.cone_decoder import cone_logits, make_hold_shaped_model_dir
from tests.conftest import run_export


def test_tiny_export_writes_models_and_manifest(tiny_model_dir: Path) -> None:
    manifest = load_manifest(tiny_model_dir)
    assert set(manifest.models) == {"encoder", "decoder", "encoder_fp16", "decoder_fp16", "preprocess", "postprocess",
                                    "cutout_resize", "decoder_web", "decoder_web_int8"}
    assert manifest.model_type == "tiny"
    assert manifest.weights == {"origin": "random", "seed": 3}
    assert manifest.image_size == 1024 and manifest.num_mask_tokens == 4
    assert manifest.pixel_mean == (123.675, 116.28, 103.53)
    assert manifest.versions["torch"].startswith("2.14")
    decoder = manifest.models["decoder"]
    assert tuple(t.name for t in decoder.inputs) == DECODER_INPUTS
    assert tuple(t.name for t in decoder.outputs) == DECODER_OUTPUTS
    shapes = {t.name: t.shape for t in decoder.inputs + decoder.outputs}
    assert shapes["point_coords"] == ("num_prompts", "num_points", 2)
    assert shapes["low_res_masks"] == ("num_prompts", 4, 256, 256)
    assert manifest.models["encoder"].inputs[0].shape == (1, 3, 1024, 1024)
    for model in manifest.models.values():
        assert sha256_of_file(tiny_model_dir / model.file) == model.sha256


def test_tiny_export_records_passing_parity(tiny_model_dir: Path) -> None:
    parity = load_manifest(tiny_model_dir).parity
    fp32 = parity["fp32"]
    assert fp32["passed"] and fp32["failures"] == []
    assert fp32["embedding_max_rel"] < 1e-4
    names = {case["name"] for case in fp32["cases"]}
    assert {"one_click", "six_points", "box_only", "mask_input", "multimask", "batch_of_8_clicks"} <= names
    for case in fp32["cases"]:
        assert case["logits_max_rel"] < 1e-4, case
        assert case["mask_iou_min"] > 0.999, case
    assert parity["fp16"]["enforced"] is False
    assert parity["fp16"]["embedding_max_rel"] < 0.05


def test_decoder_batches_prompts_of_several_points(tiny_model_dir: Path) -> None:
    """B prompts in one call equal B calls of one prompt (rows are independent)."""
    session = ort.InferenceSession(str(tiny_model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    batch, points = 5, 3
    feed = {
        "image_embeddings": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
        "point_coords": rng.uniform(0, 1023, (batch, points, 2)).astype(np.float32),
        "point_labels": np.tile(np.array([1, 0, -1], np.float32), (batch, 1)),
        "mask_input": rng.standard_normal((batch, 1, 256, 256)).astype(np.float32),
        "has_mask_input": np.array([0, 1, 0, 1, 1], np.float32),
    }
    low, iou = session.run(None, feed)
    assert low.shape == (batch, 4, 256, 256) and iou.shape == (batch, 4)
    for i in range(batch):
        single = {k: (v if k == "image_embeddings" else v[i : i + 1]) for k, v in feed.items()}
        low_i, iou_i = session.run(None, single)
        np.testing.assert_allclose(low_i[0], low[i], atol=1e-4)
        np.testing.assert_allclose(iou_i[0], iou[i], atol=1e-5)


def test_external_data_layout_loads(tmp_path: Path) -> None:
    result = run_export("--model-type", "tiny", "--random-weights", "--external-data", "--skip-parity",
                        "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    manifest = load_manifest(tmp_path)
    encoder = manifest.models["encoder"]
    assert encoder.external_data == "encoder.onnx.data"
    assert (tmp_path / "encoder.onnx").stat().st_size < 100_000 < (tmp_path / "encoder.onnx.data").stat().st_size
    session = ort.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": np.zeros((1, 3, 1024, 1024), np.float32)})[0]
    assert out.shape == (1, 256, 64, 64) and np.isfinite(out).all()
    assert manifest.parity == {"skipped": True}
    # The benchmarks' hold-shaped copy keeps the layout: external data linked, rewritten decoders inline.
    hold = make_hold_shaped_model_dir(tmp_path, tmp_path / "hold")
    held = load_manifest(hold)
    assert held.models["encoder"].external_data == "encoder.onnx.data" and held.models["decoder"].external_data is None
    assert os.path.samefile(tmp_path / "encoder.onnx.data", hold / "encoder.onnx.data")
    engine = SamEngine.from_model_dir(hold, RuntimeSettings())
    coords = np.asarray([[[300.0, 200.0], [0.0, 0.0]]], np.float32)
    decoded = engine.decode(engine.encode(engine.prepare(Image.new("RGB", (64, 48)))).value, coords,
                            np.asarray([[1.0, -1.0]], np.float32))
    assert np.array_equal(np.asarray(decoded.low_res_masks) > 0, cone_logits(coords) > 0)


def _export_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``export_sam.main`` in this process (no torch import per case): (exit code, stderr)."""
    code = export_main(list(args))
    return code, capsys.readouterr().err


def test_checkpoint_file_for_another_model_type_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tmp_path / "tiny.pth"
    torch.save(build_random("tiny", 0).state_dict(), checkpoint)
    code, err = _export_in_process(capsys, "--model-type", "vit_b", "--checkpoint", str(checkpoint),
                                   "--output", str(tmp_path / "out"))
    assert code == 1
    assert "is a tiny checkpoint, not vit_b" in err
    assert "Traceback" not in err


def test_missing_checkpoint_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _export_in_process(capsys, "--model-type", "vit_b", "--checkpoint", str(tmp_path / "nope.pth"),
                                   "--output", str(tmp_path / "o"))
    assert code == 1
    assert "nope.pth does not exist" in err and "Traceback" not in err


def test_corrupt_checkpoint_file_is_a_clear_error(tmp_path: Path) -> None:
    """The one subprocess case: what a user sees on the terminal, exit code and all."""
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    result = run_export("--model-type", "tiny", "--checkpoint", str(bad), "--output", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "cannot read checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_unwritable_output_directory_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, err = _export_in_process(capsys, "--model-type", "tiny", "--random-weights", "--output", str(blocker / "sub"))
    assert code == 1
    assert "is not writable" in err and "Traceback" not in err


def test_tiny_checkpoint_file_exports_through_the_checkpoint_path(tmp_path: Path, tiny_sam: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``--checkpoint`` end to end in seconds: the file's weights are what gets exported (parity enforced)."""
    checkpoint = tmp_path / "tiny_seed3.pth"
    torch.save(tiny_sam.state_dict(), checkpoint)
    code, err = _export_in_process(capsys, "--model-type", "tiny", "--checkpoint", str(checkpoint),
                                   "--output", str(tmp_path / "out"))
    assert code == 0, err
    manifest = load_manifest(tmp_path / "out")
    assert manifest.weights == {"origin": "checkpoint", "file": "tiny_seed3.pth", "sha256": sha256_of_file(checkpoint)}
    assert manifest.parity["fp32"]["passed"]
    session = ort.InferenceSession(str(tmp_path / "out" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)
    with torch.no_grad():
        expected = tiny_sam.image_encoder(torch.from_numpy(image)).numpy()
    assert np.abs(session.run(None, {"image": image})[0] - expected).max() < 1e-4


def test_offline_download_names_url_and_checkpoint_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = f"http://127.0.0.1:{free_port()}/segment_anything/"
    monkeypatch.setenv("SAM_CHECKPOINT_MIRROR", mirror)
    monkeypatch.setenv("SAM_CHECKPOINT_CACHE", str(tmp_path / "cache"))
    code, err = _export_in_process(capsys, "--model-type", "vit_b", "--output", str(tmp_path / "o"))
    assert code == 1
    assert f"{mirror}sam_vit_b_01ec64.pth" in err
    assert "--checkpoint" in err and "Traceback" not in err


@pytest.fixture()
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_download_verifies_checksum_and_reuses_cache(file_server: tuple[str, Path], tmp_path: Path) -> None:
    base, root = file_server
    payload = np.random.default_rng(0).bytes(3_000_000)
    (root / "weights.pth").write_bytes(payload)
    import hashlib

    digest = hashlib.sha256(payload).hexdigest()
    cache = tmp_path / "cache"
    path = fetch_checkpoint(f"{base}/weights.pth", digest, cache)
    assert path.read_bytes() == payload
    (root / "weights.pth").unlink()  # a second call must not need the server
    assert fetch_checkpoint(f"{base}/weights.pth", digest, cache) == path
    with pytest.raises(CheckpointDownloadError, match="expected"):
        (root / "other.pth").write_bytes(b"tampered")
        fetch_checkpoint(f"{base}/other.pth", digest, cache)
    assert not (cache / "other.pth").exists() and not (cache / "other.pth.part").exists()


def test_manifest_is_json_with_parity_numbers(tiny_model_dir: Path) -> None:
    data = json.loads((tiny_model_dir / "manifest.json").read_text())
    assert data["format_version"] == 1 and data["opset"] == 17 and data["mask_threshold"] == 0.0
    fp32 = data["parity"]["fp32"]
    assert fp32["precision"] == "fp32" and fp32["image_size_hw"] == [600, 800] and fp32["passed"] is True
    assert 0.0 <= fp32["embedding_max_abs"] and 0.0 <= fp32["embedding_max_rel"] < fp32["tolerances"]["embedding_rel"]
    assert len(fp32["cases"]) == 8
    for case in fp32["cases"]:
        assert all(isinstance(case[key], float) and math.isfinite(case[key])
                   for key in ("logits_max_abs", "logits_max_rel", "iou_pred_max_abs", "mask_iou_min")), case
        assert case["logits_max_rel"] < fp32["tolerances"]["logits_rel"]
        assert case["iou_pred_max_abs"] < fp32["tolerances"]["iou_pred_abs"]
        assert fp32["tolerances"]["mask_iou_min"] <= case["mask_iou_min"] <= 1.0
