"""Every node of every graph the GPU path runs has a CUDA EP kernel in the pinned onnxruntime-gpu.

The table (tests/data/cuda_kernels_onnxruntime_gpu_1.26.0.json) is that wheel's own kernel
registrations, written by scripts/cuda_kernel_table.py; ``export.kernel_coverage`` checks a
graph's ops, opsets and inferred types against it. No GPU is needed.
"""
from __future__ import annotations

import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from export.kernel_coverage import KernelTable, uncovered_nodes
from export.prepost_graphs import build_cutout_resize, build_postprocess, build_preprocess
from runtime.manifest import BROWSER_ROLES, load_manifest

REPO = Path(__file__).resolve().parents[2]
TABLE_PATH = REPO / "tests" / "data" / "cuda_kernels_onnxruntime_gpu_1.26.0.json"


@pytest.fixture(scope="module")
def table() -> KernelTable:
    return KernelTable.load(TABLE_PATH)


def _pinned_onnxruntime_gpu() -> str:
    text = (REPO / "requirements-sagemaker-gpu.txt").read_text()
    match = re.search(r"^onnxruntime-gpu(?:\[[^\]]*\])?==([\w.]+)", text, re.MULTILINE)
    assert match, "requirements-sagemaker-gpu.txt pins no onnxruntime-gpu"
    return match.group(1)


def test_the_table_is_the_release_the_cuda_12_image_pins(table: KernelTable) -> None:
    assert table.version == _pinned_onnxruntime_gpu()
    assert re.fullmatch(r"[0-9a-f]{64}", table.wheel_sha256)
    assert len({(k.op, k.domain) for k in table.kernels}) > 200  # the whole registry, not a hand-picked list


def test_pre_and_post_processing_graphs_have_cuda_kernels(table: KernelTable) -> None:
    graphs = {"preprocess": build_preprocess(1024, (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
              "postprocess": build_postprocess(1024, 256, 4, 0.0), "cutout_resize": build_cutout_resize()}
    assert {name: [str(node) for node in uncovered_nodes(model, table)] for name, model in graphs.items()} == {
        "preprocess": [], "postprocess": [], "cutout_resize": []}


def test_every_exported_graph_has_cuda_kernels(table: KernelTable, tiny_model_dir: Path) -> None:
    manifest = load_manifest(tiny_model_dir, verify_checksums=False)
    assert {"encoder_fp16", "decoder_fp16", "preprocess", "postprocess", "cutout_resize"} <= set(manifest.models)
    gpu_graphs = {role: entry for role, entry in manifest.models.items() if role not in BROWSER_ROLES}
    missing = {role: [str(node) for node in uncovered_nodes(onnx.load(str(tiny_model_dir / entry.file)), table)]
               for role, entry in gpu_graphs.items()}
    assert missing == {role: [] for role in gpu_graphs}  # the browser's decoders never run on the GPU


def _one_node_model(op: str, elem_type: int, opset: int, inputs: list[str],
                    initializers: list[TensorProto]) -> onnx.ModelProto:
    node = helper.make_node(op, inputs, ["y"], name="the_node")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", elem_type, [2, 3])],
                              [helper.make_tensor_value_info("y", elem_type, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_the_check_names_a_pad_of_a_type_without_cuda_kernel(table: KernelTable) -> None:
    pads = helper.make_tensor("pads", TensorProto.INT64, [4], [0, 0, 0, 5])
    int32 = _one_node_model("Pad", TensorProto.INT32, 18, ["x", "pads"], [pads])
    [node] = uncovered_nodes(int32, table)
    assert (node.node, node.op, node.opset, node.types) == ("the_node", "Pad", 18, {"T": "int32"})
    assert "bool,double,float,float16" in node.reason
    assert uncovered_nodes(_one_node_model("Pad", TensorProto.BOOL, 18, ["x", "pads"], [pads]), table) == []


def test_the_check_names_an_op_without_cuda_kernel(table: KernelTable) -> None:
    model = _one_node_model("Det", TensorProto.FLOAT, 18, ["x"], [])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3  # Det wants square matrices
    [node] = uncovered_nodes(model, table)
    assert node.op == "Det" and node.reason == "the CUDA EP has no kernel for this op"
