"""ONNX export of the encoder and decoder wrappers, fp16 conversion, external data.

Graphs over 2 GB (vit_h's encoder) cannot live in one protobuf: they are saved with their
weights in one external-data file beside the graph (``encoder.onnx.data``).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from onnx import TensorProto
from segment_anything.modeling import Sam

from export.onnx_wrappers import DecoderWrapper, EncoderWrapper
from runtime.manifest import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    ModelFile,
    TensorSpec,
    sha256_of_file,
)

#: Graphs whose weights exceed this many bytes are saved with external data.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def trace_module(module: torch.nn.Module, args: tuple[torch.Tensor, ...], opset: int,
           input_names: tuple[str, ...], output_names: tuple[str, ...],
           dynamic_axes: dict[str, dict[int, str]]) -> onnx.ModelProto:
    """Trace ``module`` with the TorchScript-based exporter; return the graph with its weights.

    The trace goes to a private temporary directory, because the exporter scatters the
    weights of >2 GB graphs over one file per tensor; ``save_model`` writes the final form.
    """
    with tempfile.TemporaryDirectory(prefix="sam-export-") as scratch:
        traced = Path(scratch) / "model.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                args,
                str(traced),
                dynamo=False,
                export_params=True,
                opset_version=opset,
                do_constant_folding=True,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
            )
        return onnx.load(str(traced), load_external_data=True)


def trace_encoder(sam: Sam, opset: int) -> onnx.ModelProto:
    """The image encoder: image float32 1x3xSxS -> image_embeddings float32 1x256x64x64."""
    size = sam.image_encoder.img_size
    dummy = torch.randn(1, 3, size, size)
    graph = trace_module(EncoderWrapper(sam), (dummy,), opset, (ENCODER_INPUT,), (ENCODER_OUTPUT,), {})
    annotate_outputs(graph, {ENCODER_OUTPUT: (1, sam.prompt_encoder.embed_dim, *sam.prompt_encoder.image_embedding_size)})
    return graph


def trace_decoder(sam: Sam, opset: int) -> onnx.ModelProto:
    """The batched prompt decoder (see ``DecoderWrapper`` for the signature)."""
    embed_dim = sam.prompt_encoder.embed_dim
    grid = sam.prompt_encoder.image_embedding_size
    low_res = 4 * grid[0]
    batch, points = 3, 4
    dummy = (
        torch.randn(1, embed_dim, *grid),
        torch.randint(0, sam.image_encoder.img_size, (batch, points, 2)).to(torch.float32),
        torch.tensor([[1, 0, 1, -1]] * batch, dtype=torch.float32),
        torch.randn(batch, 1, low_res, low_res),
        torch.ones(batch, dtype=torch.float32),
    )
    dynamic_axes = {
        "point_coords": {0: "num_prompts", 1: "num_points"},
        "point_labels": {0: "num_prompts", 1: "num_points"},
        "mask_input": {0: "num_prompts"},
        "has_mask_input": {0: "num_prompts"},
        "low_res_masks": {0: "num_prompts"},
        "iou_predictions": {0: "num_prompts"},
    }
    graph = trace_module(DecoderWrapper(sam), dummy, opset, DECODER_INPUTS, DECODER_OUTPUTS, dynamic_axes)
    tokens = sam.mask_decoder.num_mask_tokens
    annotate_outputs(graph, {"low_res_masks": ("num_prompts", tokens, low_res, low_res),
                              "iou_predictions": ("num_prompts", tokens)})
    return graph


def annotate_outputs(model: onnx.ModelProto, shapes: dict[str, tuple[int | str, ...]]) -> None:
    """Replace the tracer's symbolic output dims (from reshapes) by the known static ones."""
    for output in model.graph.output:
        if output.name in shapes:
            dims = output.type.tensor_type.shape.dim
            del dims[:]
            for value in shapes[output.name]:
                dim = dims.add()
                if isinstance(value, str):
                    dim.dim_param = value
                else:
                    dim.dim_value = value


def _tensor_specs(values: list[onnx.ValueInfoProto]) -> tuple[TensorSpec, ...]:
    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_param if d.dim_param else int(d.dim_value) for d in tensor_type.shape.dim)
        dtype = TensorProto.DataType.Name(tensor_type.elem_type).lower()
        specs.append(TensorSpec(name=value.name, shape=shape, dtype=dtype))
    return tuple(specs)


def save_model(model: onnx.ModelProto, path: Path, role: str, precision: str,
               force_external_data: bool = False) -> ModelFile:
    """Write ``model`` to ``path`` and describe it for the manifest.

    Graphs whose weights exceed ``EXTERNAL_DATA_THRESHOLD`` (or all, when forced) keep their
    weights in one ``<file>.data`` beside the graph; the rest are self-contained.
    """
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    use_external = force_external_data or weight_bytes > EXTERNAL_DATA_THRESHOLD
    data_path = path.with_name(path.name + ".data")
    data_path.unlink(missing_ok=True)
    if use_external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_path.name, size_threshold=1024)
    else:
        onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path))
    return ModelFile(
        role=role,
        file=path.name,
        precision=precision,
        size_bytes=path.stat().st_size,
        sha256=sha256_of_file(path),
        inputs=_tensor_specs(list(model.graph.input)),
        outputs=_tensor_specs(list(model.graph.output)),
        external_data=data_path.name if use_external else None,
        external_data_size_bytes=data_path.stat().st_size if use_external else None,
    )


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of ``model`` whose inputs and outputs stay float32 (for GPU providers)."""
    from onnxconverter_common import float16

    source = onnx.ModelProto()
    source.CopyFrom(model)
    # Stale float32 value_info from the trace makes the converter leave mixed-type nodes.
    del source.graph.value_info[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(source, keep_io_types=True, disable_shape_infer=True)
