"""SAM's pre- and post-processing as two small ONNX graphs, so a request can stay on the GPU.

``preprocess.onnx``: the decoded image -> the encoder's input, as ``SamPredictor.set_image``
(ResizeLongestSide, normalize, zero-pad bottom/right after normalizing):

    image_hwc      uint8  H x W x 3  (RGB, upright)
    input_size_hw  int64  [2]        (h, w) of the resized image, from ``resized_size_hw``
 -> image          float32 1 x 3 x S x S

The image is cast to float32 *before* ``Resize`` (uint8 ``Resize`` is wrong on the CUDA EP);
``Resize`` is linear, half_pixel, antialiased, like Pillow's BILINEAR; the result is rounded
and clipped to 0..255 as Pillow's uint8 output is. Antialiased float ``Resize`` is close to
Pillow, not equal, so its parity is measured by mask IoU (see ``export/parity.py``).

``postprocess.onnx``: the decoder's low-res logits -> full-size thresholded masks, compact:

    low_res_masks  float32 P x T x L x L (the decoder's output, all T mask tokens)
    mask_indices   int64   [M]   which (prompt, token) pairs to render: prompt * T + token
    input_size_hw  int64   [2]   (h, w) of the resized image inside the S x S frame (the crop)
    output_size_hw int64   [2]   (H', W') of the output masks, pixels
    min_area       int64   []    masks smaller than this many output pixels are not OR-ed (0: keep all)
 -> union_packed   uint8   H' x ceil(W'/8)      OR of the kept masks, rows bit-packed MSB first
    masks_packed   uint8   M x H' x ceil(W'/8)  every mask, packed the same way
    areas          int64   [M]                  mask pixels
    boxes_xyxy     int64   M x 4                (x0, y0, x1, y1): first column/row, last + 1;
                                                (W', H', 0, 0) for an empty mask
    kept           bool    [M]                  area >= min_area, or min_area <= 0

``cutout_resize.onnx``: the decoded photo -> the cut-out's pixels at the output size, so a photo
decoded on the GPU is resized there and only the output's pixels come back to the host:

    image_hwc      uint8  H x W x 3    (RGB, upright)
    output_size_hw int64  [2]          (H', W') output pixels
 -> rgb_hwc        uint8  H' x W' x 3

It is the pre-processing graph's resize (the same nodes), cast back to uint8. Against
Pillow's BILINEAR (the CPU path, ``HoldExtractor``) it differs by at most one level per channel
except in the outermost row and column when shrinking, where ONNX Runtime weighs the
antialiasing filter's cut-off taps differently (up to 14 levels on pixel noise, at most one on
a smooth image; ``tests/unit/test_cutout_resize_graph.py``).

Upsampling is SAM's ``postprocess_masks``: bilinear (``align_corners=False``, no
antialias) to the S x S frame, crop (h, w), bilinear to (H', W'), threshold. Sizes are
inputs, so one graph serves every photo size. The bit-packed rows are exactly the rows of a
1-bit PNG and of ``np.packbits(mask, axis=1)``. Both graphs use only operators that the
CUDA EP implements for these types (float Resize, int32/int64 reductions, Cast, Slice,
Pad, Gather, Where, Range), so nothing falls back to the CPU between them. They are built
with ``onnx.helper`` (no torch) at opset 18 (``Resize`` with ``antialias`` and ``axes``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.manifest import POSTPROCESS_INPUTS, POSTPROCESS_OUTPUTS, PREPROCESS_INPUTS, PREPROCESS_OUTPUTS

#: The cut-out resize graph's input and output names.
CUTOUT_RESIZE_INPUTS = ("image_hwc", "output_size_hw")
CUTOUT_RESIZE_OUTPUTS = ("rgb_hwc",)
#: Opset of the pre/post graphs: Resize ``antialias`` and ``axes`` arrived in opset 18.
PREPOST_OPSET = 18
#: IR version readable by onnxruntime >= 1.16 and OpenVINO.
IR_VERSION = 9


def _const(name: str, value: object, dtype: type) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _model(nodes: list[onnx.NodeProto], name: str, inputs: list[onnx.ValueInfoProto],
           outputs: list[onnx.ValueInfoProto], initializers: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", PREPOST_OPSET)],
                              producer_name="sam-holds export/prepost_graphs.py")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _resize_like_pillow(image_hwc: str, sizes: str, target: str, axes: list[int] | None) -> list[onnx.NodeProto]:
    """uint8 H x W x 3 ``image_hwc`` -> float32 1 x 3 x h x w ``target`` at ``sizes``, whole
    pixel levels 0..255: Pillow's BILINEAR (linear, half_pixel, antialiased when shrinking).
    ``sizes``: (h, w) with ``axes`` [2, 3], or all four (1, 3, h, w) with ``axes`` None.
    Needs the initializers ``axis_0``, ``zero_f`` and ``max_u8`` (``_resize_constants``)."""
    axes_attribute: dict[str, Any] = {} if axes is None else {"axes": axes}
    return [
        helper.make_node("Transpose", [image_hwc], ["chw_u8"], perm=[2, 0, 1]),
        helper.make_node("Cast", ["chw_u8"], ["chw"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["chw", "axis_0"], ["nchw"]),
        helper.make_node("Resize", ["nchw", "", "", sizes], ["resized"], mode="linear",
                         coordinate_transformation_mode="half_pixel", antialias=1, **axes_attribute),
        helper.make_node("Round", ["resized"], ["rounded"]),
        helper.make_node("Clip", ["rounded", "zero_f", "max_u8"], [target]),
    ]


def _resize_constants() -> list[onnx.TensorProto]:
    """The initializers ``_resize_like_pillow`` reads."""
    return [_const("axis_0", [0], np.int64), _const("zero_f", 0.0, np.float32),
            _const("max_u8", 255.0, np.float32)]


def build_cutout_resize() -> onnx.ModelProto:
    """The cut-out's resize graph (see the module docstring): the decoded photo, on the device,
    to the output size, so only the output's pixels are copied to the host.

    The sizes are given for all four axes, not with ``axes``: ONNX Runtime's transpose optimizer
    (1.x, ``ORT_ENABLE_ALL``) cancels the two Transposes through a Resize and mis-permutes a
    two-element ``sizes`` (the session fails to load)."""
    image_hwc, size_hw = CUTOUT_RESIZE_INPUTS
    (rgb_hwc,) = CUTOUT_RESIZE_OUTPUTS
    nodes = [
        helper.make_node("Concat", ["batch_channels", size_hw], ["sizes_nchw"], axis=0),
        *_resize_like_pillow(image_hwc, "sizes_nchw", "pixels", axes=None),
        helper.make_node("Cast", ["pixels"], ["pixels_u8"], to=TensorProto.UINT8),
        helper.make_node("Squeeze", ["pixels_u8", "axis_0"], ["chw_out"]),
        helper.make_node("Transpose", ["chw_out"], [rgb_hwc], perm=[1, 2, 0]),
    ]
    return _model(nodes, "sam_cutout_resize",
                  [helper.make_tensor_value_info(image_hwc, TensorProto.UINT8, ["height", "width", 3]),
                   helper.make_tensor_value_info(size_hw, TensorProto.INT64, [2])],
                  [helper.make_tensor_value_info(rgb_hwc, TensorProto.UINT8, ["out_height", "out_width", 3])],
                  [*_resize_constants(), _const("batch_channels", [1, 3], np.int64)])


def build_preprocess(image_size: int, pixel_mean: tuple[float, float, float],
                     pixel_std: tuple[float, float, float]) -> onnx.ModelProto:
    """The pre-processing graph (see the module docstring)."""
    image_hwc, size_hw = PREPROCESS_INPUTS
    (image,) = PREPROCESS_OUTPUTS
    nodes = [
        *_resize_like_pillow(image_hwc, size_hw, "pixels", axes=[2, 3]),
        helper.make_node("Sub", ["pixels", "pixel_mean"], ["centered"]),
        helper.make_node("Div", ["centered", "pixel_std"], ["normalized"]),
        helper.make_node("Sub", ["frame_hw", size_hw], ["pad_hw"]),
        helper.make_node("Concat", ["zeros_6", "pad_hw"], ["pads"], axis=0),
        helper.make_node("Pad", ["normalized", "pads"], [image], mode="constant"),
    ]
    initializers = [
        *_resize_constants(),
        _const("pixel_mean", np.reshape(pixel_mean, (1, 3, 1, 1)), np.float32),
        _const("pixel_std", np.reshape(pixel_std, (1, 3, 1, 1)), np.float32),
        _const("frame_hw", [image_size, image_size], np.int64),
        _const("zeros_6", [0] * 6, np.int64),
    ]
    return _model(nodes, "sam_preprocess",
                  [helper.make_tensor_value_info(image_hwc, TensorProto.UINT8, ["height", "width", 3]),
                   helper.make_tensor_value_info(size_hw, TensorProto.INT64, [2])],
                  [helper.make_tensor_value_info(image, TensorProto.FLOAT, [1, 3, image_size, image_size])],
                  initializers)


def _pack_rows(source: str, target: str, prefix: str) -> list[onnx.NodeProto]:
    """int32 0/1 (N, H, W) -> uint8 (N, H, ceil(W/8)): each row's bits packed MSB first."""
    p = prefix
    return [
        helper.make_node("Shape", [source], [p + "shape"]),
        helper.make_node("Slice", [p + "shape", "minus_1", "int64_max"], [p + "width"]),
        helper.make_node("Sub", ["zero_1", p + "width"], [p + "neg_width"]),
        helper.make_node("Mod", [p + "neg_width", "eight"], [p + "pad_width"]),
        helper.make_node("Concat", ["zeros_5", p + "pad_width"], [p + "pads"], axis=0),
        # Pad runs on bool: the CUDA EP has no int32 Pad (opset 18+), which would send it to the CPU.
        helper.make_node("Cast", [source], [p + "bits"], to=TensorProto.BOOL),
        helper.make_node("Pad", [p + "bits", p + "pads"], [p + "padded_bits"], mode="constant"),
        helper.make_node("Cast", [p + "padded_bits"], [p + "padded"], to=TensorProto.INT32),
        helper.make_node("Slice", [p + "shape", "zero_1", "minus_1"], [p + "leading"]),
        helper.make_node("Concat", [p + "leading", "minus_1", "eight"], [p + "grouped_shape"], axis=0),
        helper.make_node("Reshape", [p + "padded", p + "grouped_shape"], [p + "groups"]),
        helper.make_node("Mul", [p + "groups", "bit_weights"], [p + "weighted"]),
        helper.make_node("ReduceSum", [p + "weighted", "minus_1"], [p + "bytes_i32"], keepdims=0),
        helper.make_node("Cast", [p + "bytes_i32"], [target], to=TensorProto.UINT8),
    ]


def _first_last(any_along: str, length_source: str, axis: int, prefix: str) -> list[onnx.NodeProto]:
    """For (M, N) 0/1 int32 ``any_along``: first index with a 1 (N if none) and last + 1 (0 if none)."""
    p = prefix
    return [
        helper.make_node("Shape", [length_source], [p + "shape"], start=axis, end=axis + 1),
        helper.make_node("Squeeze", [p + "shape"], [p + "length"]),
        helper.make_node("Range", ["zero_i64", p + "length", "one_i64"], [p + "index"]),
        helper.make_node("Cast", [any_along], [p + "any"], to=TensorProto.BOOL),
        helper.make_node("Where", [p + "any", p + "index", p + "length"], [p + "or_length"]),
        helper.make_node("ReduceMin", [p + "or_length", "minus_1"], [p + "first"], keepdims=1),
        helper.make_node("Add", [p + "index", "one_i64"], [p + "index_1"]),
        helper.make_node("Where", [p + "any", p + "index_1", "zero_i64"], [p + "or_zero"]),
        helper.make_node("ReduceMax", [p + "or_zero", "minus_1"], [p + "end"], keepdims=1),
    ]


def build_postprocess(image_size: int, low_res_size: int, num_mask_tokens: int,
                      mask_threshold: float) -> onnx.ModelProto:
    """The post-processing graph (see the module docstring)."""
    logits, indices, size_hw, out_hw, min_area = POSTPROCESS_INPUTS
    union, masks, areas, boxes, kept = POSTPROCESS_OUTPUTS
    nodes = [
        helper.make_node("Reshape", [logits, "flat_shape"], ["flat"]),
        helper.make_node("Gather", ["flat", indices], ["picked"], axis=0),
        helper.make_node("Unsqueeze", ["picked", "axis_1"], ["picked_4d"]),
        helper.make_node("Resize", ["picked_4d", "", "", "frame_hw"], ["frame"], mode="linear",
                         coordinate_transformation_mode="half_pixel", axes=[2, 3]),
        helper.make_node("Slice", ["frame", "zeros_2", size_hw, "axes_23"], ["crop"]),
        helper.make_node("Resize", ["crop", "", "", out_hw], ["full"], mode="linear",
                         coordinate_transformation_mode="half_pixel", axes=[2, 3]),
        helper.make_node("Squeeze", ["full", "axis_1"], ["full_3d"]),
        helper.make_node("Greater", ["full_3d", "threshold"], ["masks_bool"]),
        helper.make_node("Cast", ["masks_bool"], ["masks_i32"], to=TensorProto.INT32),
        helper.make_node("ReduceSum", ["masks_i32", "axes_12"], ["areas_i32"], keepdims=0),
        helper.make_node("Cast", ["areas_i32"], [areas], to=TensorProto.INT64),
        helper.make_node("GreaterOrEqual", [areas, min_area], ["large_enough"]),
        helper.make_node("LessOrEqual", [min_area, "zero_i64"], ["no_filter"]),
        helper.make_node("Or", ["large_enough", "no_filter"], [kept]),
        helper.make_node("Cast", [kept], ["kept_i32"], to=TensorProto.INT32),
        helper.make_node("Unsqueeze", ["kept_i32", "axes_12"], ["kept_3d"]),
        helper.make_node("Mul", ["masks_i32", "kept_3d"], ["kept_masks"]),
        helper.make_node("ReduceMax", ["kept_masks", "axis_0"], ["union_i32"], keepdims=1),
        *_pack_rows("masks_i32", masks, "masks_"),
        *_pack_rows("union_i32", "union_3d", "union_"),
        helper.make_node("Squeeze", ["union_3d", "axis_0"], [union]),
        helper.make_node("ReduceMax", ["masks_i32", "axis_2"], ["any_row"], keepdims=0),  # (M, H')
        helper.make_node("ReduceMax", ["masks_i32", "axis_1"], ["any_col"], keepdims=0),  # (M, W')
        *_first_last("any_row", "masks_i32", 1, "rows_"),
        *_first_last("any_col", "masks_i32", 2, "cols_"),
        helper.make_node("Concat", ["cols_first", "rows_first", "cols_end", "rows_end"], [boxes], axis=1),
    ]
    initializers = [
        _const("flat_shape", [-1, low_res_size, low_res_size], np.int64),
        _const("axis_0", [0], np.int64),
        _const("axis_1", [1], np.int64),
        _const("axis_2", [2], np.int64),
        _const("axes_12", [1, 2], np.int64),
        _const("axes_23", [2, 3], np.int64),
        _const("frame_hw", [image_size, image_size], np.int64),
        _const("zeros_2", [0, 0], np.int64),
        _const("threshold", mask_threshold, np.float32),
        _const("zero_i64", 0, np.int64),
        _const("one_i64", 1, np.int64),
        _const("minus_1", [-1], np.int64),
        _const("int64_max", [np.iinfo(np.int64).max], np.int64),
        _const("zero_1", [0], np.int64),
        _const("eight", [8], np.int64),
        _const("zeros_5", [0] * 5, np.int64),
        _const("bit_weights", [128, 64, 32, 16, 8, 4, 2, 1], np.int32),
    ]
    return _model(
        nodes, "sam_postprocess",
        [helper.make_tensor_value_info(logits, TensorProto.FLOAT, ["num_prompts", num_mask_tokens, low_res_size, low_res_size]),
         helper.make_tensor_value_info(indices, TensorProto.INT64, ["num_masks"]),
         helper.make_tensor_value_info(size_hw, TensorProto.INT64, [2]),
         helper.make_tensor_value_info(out_hw, TensorProto.INT64, [2]),
         helper.make_tensor_value_info(min_area, TensorProto.INT64, [])],
        [helper.make_tensor_value_info(union, TensorProto.UINT8, ["height", "packed_width"]),
         helper.make_tensor_value_info(masks, TensorProto.UINT8, ["num_masks", "height", "packed_width"]),
         helper.make_tensor_value_info(areas, TensorProto.INT64, ["num_masks"]),
         helper.make_tensor_value_info(boxes, TensorProto.INT64, ["num_masks", 4]),
         helper.make_tensor_value_info(kept, TensorProto.BOOL, ["num_masks"])],
        initializers)
