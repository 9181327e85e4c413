"""Every node of decoder_web.onnx (and its quantised twin) has a kernel in onnxruntime-web 1.30.0's WASM backend.

The operator list: tests/data/cpu_kernels_onnxruntime_1.30.0.json, the CPU execution provider's
own kernel registrations in the onnxruntime 1.30.0 wheel (``scripts/cuda_kernel_table.py
--provider cpu``, from ``get_all_opkernel_def()``; docs/OperatorKernels.md in the onnxruntime
source is generated from the same registry). onnxruntime-web's WASM backend is that CPU EP
compiled with Emscripten from the same release; the npm package's own docs list operators only
for its WebGL, WebGPU and WebNN backends. ``export.kernel_coverage`` checks op, opset and
inferred types. The Chromium test (tests/integration/test_browser_decoder.py) then runs the
graph in onnxruntime-web itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import onnx
import pytest

from export.export_sam import DEFAULT_OPSET
from export.kernel_coverage import KernelTable, uncovered_nodes
from export.web_decoder import trace_web_decoder
from export.web_decoder_int8 import quantize_web_decoder
from serving.web_runtime import WEB_RUNTIME_PACKAGE

REPO = Path(__file__).resolve().parents[2]
TABLE_PATH = REPO / "tests" / "data" / "cpu_kernels_onnxruntime_1.30.0.json"


@pytest.fixture(scope="module")
def table() -> KernelTable:
    return KernelTable.load(TABLE_PATH)


@pytest.fixture(scope="module")
def web_decoder(tiny_sam) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    return trace_web_decoder(tiny_sam, DEFAULT_OPSET)


def test_the_table_is_the_cpu_ep_of_the_release_the_page_pins(table: KernelTable) -> None:
    lock = json.loads((REPO / "web" / "package-lock.json").read_text())
    assert table.version == lock["packages"][f"node_modules/{WEB_RUNTIME_PACKAGE}"]["version"] == "1.30.0"
    assert table.provider == "CPUExecutionProvider"
    assert len({(k.op, k.domain) for k in table.kernels}) > 200  # the whole registry, not a hand-picked list


def test_every_node_of_the_browser_decoder_has_a_wasm_kernel(table: KernelTable, web_decoder: onnx.ModelProto) -> None:
    assert [(o.domain, o.version) for o in web_decoder.opset_import] == [("", DEFAULT_OPSET)]
    ops = sorted({node.op_type for node in web_decoder.graph.node})
    assert {"Resize", "LayerNormalization", "ConvTranspose", "Erf", "Gemm"} <= set(ops), ops  # the graph's, listed
    assert [str(node) for node in uncovered_nodes(web_decoder, table)] == []


def test_every_node_of_the_quantised_browser_decoder_has_a_wasm_kernel(table: KernelTable, web_decoder: onnx.ModelProto,
                                                                       tmp_path: Path) -> None:
    onnx.save(web_decoder, tmp_path / "decoder_web.onnx")
    quantize_web_decoder(tmp_path / "decoder_web.onnx", tmp_path / "decoder_web_int8.onnx")
    quantised = onnx.load(str(tmp_path / "decoder_web_int8.onnx"))
    assert {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"} <= {node.op_type for node in quantised.graph.node}
    assert [str(node) for node in uncovered_nodes(quantised, table)] == []


def test_the_check_names_the_nodes_an_older_list_lacks(table: KernelTable, web_decoder: onnx.ModelProto) -> None:
    """Without Resize kernels (as a WASM build with a reduced operator set would be) the post-processing is named."""
    reduced = dataclasses.replace(table, kernels=tuple(k for k in table.kernels if k.op != "Resize"))
    missing = uncovered_nodes(web_decoder, reduced)
    assert [node.op for node in missing] == ["Resize", "Resize"]
    assert missing[0].reason == "the CPU EP has no kernel for this op"
