"""decoder_web.onnx (the browser's decoder) gives the server's single mask at the output size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export.web_decoder import WEB_DECODER_FILE
from runtime import postprocess as pp
from runtime.manifest import load_manifest
from runtime.sam_preprocessing import resized_size_hw, to_model_coords

CLICKS = [
    [((400.0, 300.0), 1)],
    [((120.0, 80.0), 1), ((500.0, 420.0), 0)],
    [((10.0, 590.0), 1), ((790.0, 5.0), 1), ((400.0, 300.0), 0)],
]
SIZES = [(600, 800), (1500, 700), (7, 300)]


def _sessions(model_dir: Path) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    open_ = lambda name: ort.InferenceSession(str(model_dir / name), options, providers=["CPUExecutionProvider"])
    return open_("decoder.onnx"), open_(WEB_DECODER_FILE)


@pytest.mark.parametrize("orig_hw", SIZES)
def test_web_decoder_mask_equals_server_mask(tiny_model_dir: Path, orig_hw: tuple[int, int]) -> None:
    manifest = load_manifest(tiny_model_dir)
    assert manifest.models["decoder_web"].file == WEB_DECODER_FILE
    server, web = _sessions(tiny_model_dir)
    embedding = np.random.default_rng(orig_hw[0]).standard_normal((1, 256, 64, 64)).astype(np.float32)
    input_hw = resized_size_hw(orig_hw, manifest.image_size)
    plan = pp.plan_masks(256, manifest.image_size, input_hw, orig_hw)
    for clicks in CLICKS:
        xy = np.array([[min(x, orig_hw[1] - 1), min(y, orig_hw[0] - 1)] for (x, y), _ in clicks], dtype=np.float32)
        coords = to_model_coords(xy, orig_hw, manifest.image_size).astype(np.float32)[None]
        labels = np.array([[label for _, label in clicks]], dtype=np.float32)
        feeds = {"image_embeddings": embedding, "point_coords": coords, "point_labels": labels,
                 "mask_input": np.zeros((1, 1, 256, 256), np.float32), "has_mask_input": np.zeros(1, np.float32)}
        low_res, scores = server.run(None, feeds)
        expected = pp.upsample_logits(low_res[0, 0], plan) > manifest.mask_threshold
        masks, web_scores, web_low = web.run(None, {**feeds, "input_size_hw": np.array(input_hw, np.int64),
                                                    "output_size_hw": np.array(orig_hw, np.int64)})
        assert masks.shape == (1, 1, *orig_hw)
        np.testing.assert_allclose(web_low[0, 0], low_res[0, 0], atol=1e-5)
        np.testing.assert_allclose(web_scores[0, 0], scores[0, 0], atol=1e-5)
        got = masks[0, 0] > manifest.mask_threshold
        differing = int(np.count_nonzero(got != expected))
        assert expected.any() and not expected.all()
        assert differing <= max(1, expected.size // 100_000), (clicks, differing)
