"""Decoders whose masks are hold-shaped and known analytically: a disk around each prompt's first point.

The cone: token ``t`` of prompt ``b`` at low-res pixel (i, j) has the logit

    TOKEN_RADII_1024[t] - dist(((j + 0.5) * S / L, (i + 0.5) * S / L), point_coords[b, 0])

in pixels of the S x S model frame (S = 1024, L = 256). The model frame scales the photo by
about ``S / max(H, W)``, so after SAM's two bilinear stages the mask of token ``t`` is, up to
a fraction of a pixel, the disk of radius ``TOKEN_RADII_1024[t] * max(H, W) / S`` photo pixels
around the click: a compact, hold-sized mask (radius 40 in the model frame: 158 pixels of a
4032-pixel-high photo).

Two graphs of SAM's decoder signature (``runtime.manifest.DECODER_INPUTS``/``OUTPUTS``) carry it:
- ``build_cone_decoder``: the cone alone, every other input ignored, fixed scores (``TOKEN_SCORES``):
  the tests' model with a known answer (``tests/cone_model.py``);
- ``with_cone_masks``: an exported decoder whose low-res logits become the cone's, with the real
  decoder still computed (its logits enter times ``REAL_LOGITS_WEIGHT``) and its scores kept: the
  benchmarks' model, which costs what the real one costs but whose masks look like holds, where
  random weights give noise that makes mask post-processing and PNG encoding their worst case.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from runtime.manifest import DECODER_INPUTS, DECODER_OUTPUTS, sha256_of_file

#: Radius of each mask token's disk, model-frame pixels.
TOKEN_RADII_1024 = (40.0, 20.0, 60.0, 30.0)
#: iou_predictions of each token of ``build_cone_decoder``: multimask picks token 2 (the best of tokens 1-3).
TOKEN_SCORES = (0.9, 0.3, 0.8, 0.5)
IMAGE_SIZE = 1024
LOW_RES = 256
#: The weight of the real decoder's logits in ``with_cone_masks``: they are computed, and change no mask.
REAL_LOGITS_WEIGHT = 1e-20
#: The oldest opset of the nodes ``cone_nodes`` writes (Unsqueeze takes its axes as an input from 13).
MIN_OPSET = 13
#: Prefix of every tensor name ``with_cone_masks`` adds to an exported graph.
PREFIX = "cone/"


def grid_centres_1024() -> NDArray[np.float32]:
    """Centres of the low-res pixels in model-frame pixels: float32 (L,)."""
    return ((np.arange(LOW_RES, dtype=np.float32) + np.float32(0.5)) * np.float32(IMAGE_SIZE / LOW_RES))


def cone_logits(point_coords_1024: NDArray[np.float32]) -> NDArray[np.float32]:
    """The cone in numpy: BxNx2 (x, y) model-frame points -> float32 Bx4xLxL logits."""
    grid = grid_centres_1024()
    first = np.asarray(point_coords_1024, np.float32)[:, 0, :]
    dx2 = np.square(grid[None, :] - first[:, 0:1])  # (B, L) along x
    dy2 = np.square(grid[None, :] - first[:, 1:2])  # (B, L) along y
    dist = np.sqrt(dy2[:, :, None] + dx2[:, None, :])  # (B, L, L)
    radii = np.asarray(TOKEN_RADII_1024, np.float32)[None, :, None, None]
    return (radii - dist[:, None]).astype(np.float32)


def cone_constants(prefix: str = "") -> list[onnx.TensorProto]:
    """The initializers ``cone_nodes`` reads (names prefixed by ``prefix``)."""
    arrays: dict[str, NDArray[Any]] = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64), "axis_1": np.array([1], np.int64),
              "axis_2": np.array([2], np.int64), "grid": grid_centres_1024()[None, :],
              "radii": np.asarray(TOKEN_RADII_1024, np.float32).reshape(1, 4, 1, 1)}
    return [numpy_helper.from_array(value, prefix + name) for name, value in arrays.items()]


def cone_nodes(logits: str, prefix: str = "") -> list[onnx.NodeProto]:
    """Nodes computing the cone from ``point_coords`` (B, N, 2) into ``logits`` (B, 4, L, L); every
    other name they write or read is prefixed by ``prefix``."""
    coords = DECODER_INPUTS[1]

    def node(op: str, inputs: list[str], output: str, axis: int | None = None) -> onnx.NodeProto:
        names = [name if name == coords else prefix + name for name in inputs]
        attributes: dict[str, Any] = {} if axis is None else {"axis": axis}
        return helper.make_node(op, names, [output if output == logits else prefix + output], **attributes)

    return [
        node("Gather", [coords, "zero"], "first", axis=1),  # (B, 2)
        node("Gather", ["first", "zero"], "px", axis=1),  # (B,)
        node("Gather", ["first", "one"], "py", axis=1),
        node("Unsqueeze", ["px", "axis_1"], "px_col"),  # (B, 1)
        node("Unsqueeze", ["py", "axis_1"], "py_col"),
        node("Sub", ["grid", "px_col"], "dx"),  # (B, L)
        node("Sub", ["grid", "py_col"], "dy"),
        node("Mul", ["dx", "dx"], "dx2"),
        node("Mul", ["dy", "dy"], "dy2"),
        node("Unsqueeze", ["dx2", "axis_1"], "dx2_rows"),  # (B, 1, L)
        node("Unsqueeze", ["dy2", "axis_2"], "dy2_cols"),  # (B, L, 1)
        node("Add", ["dy2_cols", "dx2_rows"], "dist2"),  # (B, L, L)
        node("Sqrt", ["dist2"], "dist"),
        node("Unsqueeze", ["dist", "axis_1"], "dist_4d"),  # (B, 1, L, L)
        node("Sub", ["radii", "dist_4d"], logits),  # (B, 4, L, L)
    ]


def _fixed_score_nodes() -> list[onnx.NodeProto]:
    coords, scores = DECODER_INPUTS[1], DECODER_OUTPUTS[1]
    return [helper.make_node("Shape", [coords], ["coords_shape"], start=0, end=1),
            helper.make_node("Concat", ["coords_shape", "four"], ["scores_shape"], axis=0),
            helper.make_node("Expand", ["token_scores", "scores_shape"], [scores])]  # (B, 4)


def build_cone_decoder(embedding_shape: tuple[int, ...] = (1, 256, 64, 64)) -> onnx.ModelProto:
    """The cone decoder alone: SAM's decoder signature, scores ``TOKEN_SCORES``, every input but the
    point coordinates ignored."""
    embeddings, coords, labels, mask_input, has_mask = DECODER_INPUTS
    floats = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info(embeddings, floats, list(embedding_shape)),
        helper.make_tensor_value_info(coords, floats, ["num_prompts", "num_points", 2]),
        helper.make_tensor_value_info(labels, floats, ["num_prompts", "num_points"]),
        helper.make_tensor_value_info(mask_input, floats, ["num_prompts", 1, LOW_RES, LOW_RES]),
        helper.make_tensor_value_info(has_mask, floats, ["num_prompts"]),
    ]
    outputs = [
        helper.make_tensor_value_info(DECODER_OUTPUTS[0], floats, ["num_prompts", 4, LOW_RES, LOW_RES]),
        helper.make_tensor_value_info(DECODER_OUTPUTS[1], floats, ["num_prompts", 4]),
    ]
    constants = [*cone_constants(), numpy_helper.from_array(np.array([4], np.int64), "four"),
                 numpy_helper.from_array(np.asarray(TOKEN_SCORES, np.float32)[None, :], "token_scores")]
    nodes = cone_nodes(DECODER_OUTPUTS[0]) + _fixed_score_nodes()
    graph = helper.make_graph(nodes, "cone_decoder", inputs, outputs, initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def with_cone_masks(decoder: onnx.ModelProto) -> onnx.ModelProto:
    """An exported decoder (float or quantised) whose ``low_res_masks`` are the cone's plus
    ``REAL_LOGITS_WEIGHT`` times its own; its ``iou_predictions`` are its own. A copy; the input is kept."""
    opset = next((entry.version for entry in decoder.opset_import if entry.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ValueError(f"the cone's nodes need opset {MIN_OPSET} or newer (Unsqueeze with axes as an input); "
                         f"this decoder is opset {opset}")
    model = onnx.ModelProto()
    model.CopyFrom(decoder)
    graph, logits = model.graph, DECODER_OUTPUTS[0]
    real, cone = PREFIX + "real_logits", PREFIX + "logits"
    for node in graph.node:
        node.output[:] = [real if name == logits else name for name in node.output]
        node.input[:] = [real if name == logits else name for name in node.input]
    graph.initializer.extend([*cone_constants(PREFIX), numpy_helper.from_array(
        np.array(REAL_LOGITS_WEIGHT, np.float32), PREFIX + "real_weight")])
    graph.node.extend(cone_nodes(cone, PREFIX) + [
        helper.make_node("Mul", [real, PREFIX + "real_weight"], [PREFIX + "real_weighted"]),
        helper.make_node("Add", [cone, PREFIX + "real_weighted"], [logits])])
    onnx.checker.check_model(model)
    return model


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no second copy of a large encoder), else a copy."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_hold_shaped_model_dir(source_dir: Path, target_dir: Path) -> Path:
    """A copy of the export ``source_dir`` whose CPU decoders (``decoder``, ``decoder_int8``) go
    through ``with_cone_masks`` (saved with their weights inline); the other graphs and their
    external data files are linked, the fp16 graphs (GPU only) left out; the manifest records it
    under ``weights.decoder_masks`` and keeps the rest (a random-weights export still says so)."""
    manifest = json.loads((source_dir / "manifest.json").read_text())
    manifest["models"] = {role: entry for role, entry in manifest["models"].items() if not role.endswith("_fp16")}
    target_dir.mkdir(parents=True, exist_ok=True)
    for role, entry in manifest["models"].items():
        source, target = source_dir / entry["file"], target_dir / entry["file"]
        if role in ("decoder", "decoder_int8"):
            target.unlink(missing_ok=True)
            onnx.save(with_cone_masks(onnx.load(str(source))), str(target))
            entry.pop("external_data", None)
            entry.pop("external_data_size_bytes", None)
            entry.update(size_bytes=target.stat().st_size, sha256=sha256_of_file(target))
            continue
        for name in (entry["file"], entry.get("external_data")):
            if name:
                _link_or_copy(source_dir / name, target_dir / name)
    manifest["weights"]["decoder_masks"] = "cone: a disk around each prompt's first point (synthetic/cone_decoder.py)"
    (target_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target_dir
