"""The post-processing graph pads only types the CUDA EP has a Pad kernel for (opset 18+ in
onnxruntime-gpu 1.26: bool, double, float, float16), so no Pad falls back to the CPU EP."""
from __future__ import annotations

import onnx

from export.prepost_graphs import build_postprocess

CUDA_PAD_TYPES = {onnx.TensorProto.BOOL, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}


def test_postprocess_pads_only_cuda_pad_types() -> None:
    model = onnx.shape_inference.infer_shapes(build_postprocess(1024, 256, 4, 0.0), strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    pads = [node for node in model.graph.node if node.op_type == "Pad"]
    assert pads
    assert {node.input[0]: types[node.input[0]] for node in pads} == {
        node.input[0]: types[node.input[0]] for node in pads if types[node.input[0]] in CUDA_PAD_TYPES}
