"""The benchmarks' hold-shaped export (``synthetic.cone_decoder.make_hold_shaped_model_dir``):
every CPU tier's decoder still runs and scores as exported, while its masks are the cone's disks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PIL import Image

from runtime.cpu_precision import CpuPrecision, openvino_has_bf16
from runtime.engine import SamEngine
from runtime.manifest import DECODER_OUTPUTS
from runtime.settings import RuntimeSettings
from synthetic.cone_decoder import PREFIX, REAL_LOGITS_WEIGHT, cone_logits, make_hold_shaped_model_dir
from synthetic.test_images import synthetic_image

TIERS: tuple[CpuPrecision, ...] = ("f32", "bf16", "int8")


@pytest.fixture(scope="module")
def hold_model_dir(tiny_int8_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hold_shaped_model_dir(tiny_int8_model_dir, tmp_path_factory.mktemp("hold_model"))


def _prompts() -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Three one-click prompts plus SAM's padding point: coords float32 3x2x2 (1024 frame), labels 3x2."""
    coords = np.zeros((3, 2, 2), np.float32)
    coords[:, 0] = [(100.0, 200.0), (512.5, 300.0), (900.0, 880.0)]
    return coords, np.tile(np.asarray([1.0, -1.0], np.float32), (3, 1))


@pytest.mark.parametrize("tier", TIERS)
def test_each_tier_decodes_cone_masks_with_the_exported_decoders_scores(
        tier: CpuPrecision, tiny_int8_model_dir: Path, hold_model_dir: Path) -> None:
    if tier == "bf16" and not openvino_has_bf16():
        pytest.skip("this CPU has no bf16 for OpenVINO")
    settings = RuntimeSettings(cpu_precision=tier)
    exported, hold = (SamEngine.from_model_dir(d, settings) for d in (tiny_int8_model_dir, hold_model_dir))
    assert hold.backends == exported.backends
    image = Image.fromarray(synthetic_image((480, 640), seed=1))
    coords, labels = _prompts()
    real = exported.decode(exported.encode(exported.prepare(image)).value, coords, labels)
    shaped = hold.decode(hold.encode(hold.prepare(image)).value, coords, labels)
    expected = cone_logits(coords)
    np.testing.assert_allclose(np.asarray(shaped.low_res_masks), expected, atol=0.05)
    assert np.array_equal(np.asarray(shaped.low_res_masks) > 0, expected > 0) or tier == "bf16"
    assert not np.array_equal(np.asarray(real.low_res_masks) > 0, expected > 0)
    np.testing.assert_allclose(shaped.iou_predictions, real.iou_predictions, atol=1e-4)


def test_the_manifest_says_so_and_keeps_the_rest(tiny_int8_model_dir: Path, hold_model_dir: Path) -> None:
    source, target = (json.loads((d / "manifest.json").read_text()) for d in (tiny_int8_model_dir, hold_model_dir))
    assert target["weights"]["origin"] == source["weights"]["origin"] == "random"
    assert "cone" in target["weights"]["decoder_masks"]
    assert target["parity"] == source["parity"]
    changed = {role for role, entry in target["models"].items() if entry["sha256"] != source["models"][role]["sha256"]}
    assert changed == {"decoder", "decoder_int8"}
    assert not any(role.endswith("_fp16") for role in target["models"])


def test_the_real_logits_stay_in_the_graph(hold_model_dir: Path) -> None:
    """The real decoder's logits feed the output (times REAL_LOGITS_WEIGHT), so no runtime prunes their work."""
    graph = onnx.load(str(hold_model_dir / "decoder_int8.onnx")).graph
    producers = {output: node for node in graph.node for output in node.output}
    add = producers[DECODER_OUTPUTS[0]]
    mul = producers[add.input[1]]
    assert (add.op_type, mul.op_type) == ("Add", "Mul")
    assert mul.input[0] == PREFIX + "real_logits" and mul.input[0] in producers
    weight = next(t for t in graph.initializer if t.name == mul.input[1])
    assert numpy_helper.to_array(weight) == np.float32(REAL_LOGITS_WEIGHT) > 0
