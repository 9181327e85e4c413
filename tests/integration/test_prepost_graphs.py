"""The exported pre/post-processing graphs (what a GPU runs), on the CPU EP, against Pillow, torch and numpy;
the engine's shapes from the manifest and its checks at the decoder boundary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from runtime.engine import SamEngine
from runtime.errors import InvalidPoints, ModelLoadError
from runtime.graph_runners import OrtMaskRenderer, OrtPreprocessor
from runtime.holds import Click, build_prompts
from runtime.manifest import load_manifest
from runtime.masks import box_xyxy
from runtime.preprocessors import LoadedImage
from runtime.render import NumpyMaskRenderer
from runtime.sam_preprocessing import Preprocessor
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image


def _session(model_dir: Path, name: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_dir / name), providers=["CPUExecutionProvider"])


def test_manifest_lists_the_graphs_with_passing_parity(tiny_model_dir: Path) -> None:
    manifest = load_manifest(tiny_model_dir)
    assert manifest.has_prepost_graphs
    assert [t.name for t in manifest.models["postprocess"].inputs][:2] == ["low_res_masks", "mask_indices"]
    parity = manifest.parity["fp32_graphs"]
    assert parity["passed"] and parity["pipeline"] == "graph"
    assert min(case["mask_iou_min"] for case in parity["cases"]) >= 0.99
    assert 0.0 < parity["encoder_input_max_grey"] <= 6.0  # close to Pillow, not equal
    assert manifest.parity["fp32"]["encoder_input_max_grey"] == 0.0  # the Pillow path is bit-identical


@pytest.mark.parametrize("size_hw", [(1, 1), (180, 300), (600, 800), (1024, 700), (1300, 2100), (2100, 900)])
def test_preprocess_graph_is_close_to_sam_predictor(tiny_model_dir: Path, size_hw: tuple[int, int]) -> None:
    manifest = load_manifest(tiny_model_dir)
    reference = Preprocessor(manifest.image_size, manifest.pixel_mean, manifest.pixel_std)
    graph = OrtPreprocessor(_session(tiny_model_dir, "preprocess.onnx"), "cpu", manifest.image_size)
    image = Image.fromarray(synthetic_image(size_hw, seed=size_hw[0]))
    expected = reference.prepare(image)
    got = graph.prepare(LoadedImage.from_pil(image))
    assert got.input_size_hw == expected.input_size_hw and got.orig_size_hw == expected.orig_size_hw
    tensor = np.asarray(got.tensor)
    assert tensor.shape == expected.tensor.shape and tensor.dtype == np.float32
    h, w = got.input_size_hw
    grey = np.abs(tensor - expected.tensor) * np.reshape(manifest.pixel_std, (1, 3, 1, 1))
    assert grey.max() <= 6.5  # antialiased float Resize vs Pillow's fixed-point BILINEAR
    assert np.mean(grey[..., :h, :w] < 0.5) >= 0.75
    assert not tensor[..., h:, :].any() and not tensor[..., :, w:].any()  # zero padding after normalizing


def _torch_masks(logits: np.ndarray, indices: np.ndarray, input_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """SAM's Sam.postprocess_masks on the chosen (prompt, token) logits, thresholded at 0."""
    flat = torch.from_numpy(logits.reshape(-1, *logits.shape[2:]))[torch.from_numpy(indices)][:, None]
    frame = F.interpolate(flat, (1024, 1024), mode="bilinear", align_corners=False)
    crop = frame[..., : input_hw[0], : input_hw[1]]
    return (F.interpolate(crop, out_hw, mode="bilinear", align_corners=False)[:, 0] > 0).numpy()


def _logits(prompts: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    maps = [4.0 - np.hypot(xx - rng.uniform(0, 256), yy - rng.uniform(0, 256)) / rng.uniform(5, 30)
            + rng.normal(0, 0.2, (256, 256)) for _ in range(prompts * 4)]
    return np.stack(maps).reshape(prompts, 4, 256, 256).astype(np.float32)


@pytest.mark.parametrize(("input_hw", "out_hw"), [((768, 1024), (600, 800)), ((614, 1024), (180, 300)),
                                                   ((1024, 1024), (1, 1)), ((768, 1024), (300, 400)),
                                                   ((1024, 439), (2100, 900))])
def test_postprocess_graph_equals_torch_and_numpy(tiny_model_dir: Path, input_hw: tuple[int, int],
                                                  out_hw: tuple[int, int]) -> None:
    graph = OrtMaskRenderer(_session(tiny_model_dir, "postprocess.onnx"), "cpu")
    numpy_renderer = NumpyMaskRenderer(1024)
    logits = _logits(5, seed=out_hw[0])
    indices = np.array([0, 5, 10, 12, 19], np.int64)  # prompt * 4 + token
    expected = _torch_masks(logits, indices, input_hw, out_hw)
    areas = expected.reshape(len(indices), -1).sum(axis=1)
    min_area = int(np.sort(areas)[2]) if areas.max() > 0 else 0
    got = graph.render(logits, indices, input_hw, out_hw, min_area, keep_masks=True)
    via_numpy = numpy_renderer.render(logits, indices, input_hw, out_hw, min_area, keep_masks=True)
    assert got.masks is not None and via_numpy.masks is not None
    for rendered in (got, via_numpy):
        assert rendered.masks is not None
        for index, mask in enumerate(rendered.masks):
            assert np.count_nonzero(mask.dense() != expected[index]) <= expected[index].size * 1e-5
        np.testing.assert_array_equal(rendered.areas, [m.area() for m in rendered.masks])
        assert rendered.boxes_xyxy == [box_xyxy(m.dense()) for m in rendered.masks]
        kept = rendered.areas >= min_area if min_area > 0 else np.ones(len(indices), bool)
        np.testing.assert_array_equal(rendered.kept, kept)
        union = np.zeros(out_hw, bool)
        for keep, mask in zip(kept, rendered.masks):
            union |= mask.dense() if keep else False
        np.testing.assert_array_equal(rendered.union.dense(), union)


def test_chunked_rendering_equals_one_run(tiny_model_dir: Path) -> None:
    session = _session(tiny_model_dir, "postprocess.onnx")
    logits = _logits(7, seed=3)
    indices = np.arange(7, dtype=np.int64) * 4
    one = OrtMaskRenderer(session, "cpu").render(logits, indices, (768, 1024), (300, 400), 500, True)
    chunks = OrtMaskRenderer(session, "cpu", max_pixels_per_run=2 * 300 * 400).render(
        logits, indices, (768, 1024), (300, 400), 500, True)
    np.testing.assert_array_equal(chunks.union.packed(), one.union.packed())
    np.testing.assert_array_equal(chunks.areas, one.areas)
    np.testing.assert_array_equal(chunks.kept, one.kept)
    assert chunks.boxes_xyxy == one.boxes_xyxy
    assert one.masks is not None and chunks.masks is not None
    for a, b in zip(one.masks, chunks.masks):
        np.testing.assert_array_equal(a.packed(), b.packed())


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> SamEngine:
    return SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine="onnxruntime"))


def test_engine_reads_shapes_from_the_manifest(engine: SamEngine) -> None:
    assert engine.embedding_shape == (1, 256, 64, 64)
    assert engine.low_res_size == 256 and engine.num_mask_tokens == 4
    np.testing.assert_array_equal(engine.mask_indices([0, 3, 1]), [0, 7, 9])
    with pytest.raises(ValueError, match="mask tokens must lie in 0..3"):
        engine.mask_indices([4])


def test_decoder_feeds_are_checked_at_the_boundary(engine: SamEngine) -> None:
    embedding = engine.encode(engine.prepare(Image.fromarray(synthetic_image((100, 120), seed=1)))).value
    coords = np.zeros((2, 3, 2), np.float32)
    labels = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"point_coords must be BxNx2"):
        engine.decode(embedding, np.zeros((3, 2), np.float32), labels)
    with pytest.raises(ValueError, match=r"point_labels must be 2x3"):
        engine.decode(embedding, coords, np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"point_labels must be among"):
        engine.decode(embedding, coords, labels * 7)
    with pytest.raises(ValueError, match=r"image_embeddings must be \(1, 256, 64, 64\)"):
        engine.decode(np.zeros((1, 256, 32, 32), np.float32), coords, labels)
    with pytest.raises(ValueError, match=r"mask_input must be 2x1x256x256"):
        engine.decode(embedding, coords, labels, np.zeros((2, 1, 64, 64), np.float32))
    with pytest.raises(InvalidPoints, match="finite"):
        engine.decode(embedding, np.full((2, 3, 2), np.nan, np.float32), labels)
    limited = SamEngine(engine.manifest, engine.encoder, engine.decoder, max_prompts=1, max_points=2)
    with pytest.raises(InvalidPoints, match="limit of 1"):
        limited.decode(embedding, coords, labels)
    with pytest.raises(InvalidPoints, match="limit of 2"):
        limited.decode(embedding, coords[:1], labels[:1])
    assert engine.decode(embedding, coords, labels).iou_predictions.shape == (2, 4)


def test_build_prompts_returns_what_it_says() -> None:
    coords, labels, groups = build_prompts((Click(1.5, 2.5), Click(3.0, 4.0, 0)), None, "per_click")
    assert coords.dtype == np.float32 and labels.dtype == np.float32
    assert coords.shape == (1, 3, 2) and labels.tolist() == [[1.0, 0.0, -1.0]] and groups == [(0, 1)]


def test_manifest_token_count_must_match_the_decoder(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["num_mask_tokens"] = 3
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="num_mask_tokens=3"):
        load_manifest(copy, verify_checksums=False)


def test_graph_pipeline_needs_exported_graphs(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "old_export"
    shutil.copytree(tiny_model_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["models"]["preprocess"], manifest["models"]["postprocess"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="SAM_CPU_PREPOST=graph"):
        SamEngine.from_model_dir(copy, RuntimeSettings(cpu_prepost="graph", verify_model_checksums=False))
    old = SamEngine.from_model_dir(copy, RuntimeSettings(cpu_engine="onnxruntime", verify_model_checksums=False))
    assert old.backends["postprocess"] == "numpy"  # an older export still serves on CPU
