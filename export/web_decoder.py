"""The decoder the browser (onnxruntime-web) and mobile apps run: ``decoder_web.onnx``.

One prompt of N points (N dynamic), the single-mask answer (mask token 0, as the server's
``multimask_output=False``), and the server's mask post-processing inside the graph: the
256x256 logits are upsampled to the padded 1024 frame (bilinear, align_corners=False), cropped
to the resized image's (h, w) and resized to the output (H, W). The caller thresholds the
logits at the manifest's ``mask_threshold``.
"""

from __future__ import annotations

import onnx
import torch
from segment_anything.modeling import Sam
from torch import nn
from torch.nn import functional as F

from export.exporters import annotate_outputs, trace_module
from export.onnx_wrappers import DecoderWrapper

#: decoder_web.onnx's signature: image_embeddings float32 1x256x64x64; point_coords float32
#: 1xNx2 (x, y) in the 1024 frame; point_labels float32 1xN; mask_input float32 1x1x256x256;
#: has_mask_input float32 [1]; input_size_hw int64 [2] (resized image in the 1024 frame);
#: output_size_hw int64 [2] -> masks float32 1x1xHxW logits; iou_predictions float32 1x1;
#: low_res_masks float32 1x1x256x256 (the next tap's mask_input).
WEB_DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
                      "input_size_hw", "output_size_hw")
WEB_DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
WEB_DECODER_FILE = "decoder_web.onnx"


class WebDecoderWrapper(nn.Module):
    """A decoder of ``DecoderWrapper``'s signature (``DecoderWrapper(sam)`` for SAM; the cone test
    decoder in tests) for one prompt, token 0 only, with the post-processing in the graph."""

    def __init__(self, decoder: nn.Module, image_size: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.image_size = image_size

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor, input_size_hw: torch.Tensor,
                output_size_hw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        low_res, scores = self.decoder(image_embeddings, point_coords, point_labels, mask_input, has_mask_input)
        low_res = low_res[:, :1]
        frame = F.interpolate(low_res, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        crop = frame[..., : input_size_hw[0], : input_size_hw[1]]
        out_h, out_w = output_size_hw[0], output_size_hw[1]
        masks = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=False)  # type: ignore[arg-type]
        return masks, scores[:, :1], low_res


def trace_web_decoder(sam: Sam, opset: int) -> onnx.ModelProto:
    """SAM's decoder as ``decoder_web.onnx``."""
    return trace_post_processed_decoder(DecoderWrapper(sam), int(sam.image_encoder.img_size),
                                        sam.prompt_encoder.embed_dim, tuple(sam.prompt_encoder.image_embedding_size),
                                        opset)


def trace_post_processed_decoder(decoder: nn.Module, image_size: int, embed_dim: int, grid: tuple[int, ...],
                                 opset: int) -> onnx.ModelProto:
    """Trace ``WebDecoderWrapper(decoder)`` with a dynamic number of points and dynamic output size;
    ``grid``: the embedding's (h, w) (64x64), the low-res masks being 4x that."""
    low_res = 4 * grid[0]
    dummy = (
        torch.randn(1, embed_dim, *grid),
        torch.tensor([[[100.0, 200.0], [300.0, 400.0], [0.0, 0.0]]]),
        torch.tensor([[1.0, 0.0, -1.0]]),
        torch.zeros(1, 1, low_res, low_res),
        torch.zeros(1),
        torch.tensor([768, 1024], dtype=torch.int64),
        torch.tensor([600, 800], dtype=torch.int64),
    )
    dynamic_axes = {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"},
                    "masks": {2: "output_height", 3: "output_width"}}
    graph = trace_module(WebDecoderWrapper(decoder, image_size), dummy, opset, WEB_DECODER_INPUTS,
                         WEB_DECODER_OUTPUTS, dynamic_axes)
    annotate_outputs(graph, {"masks": (1, 1, "output_height", "output_width"), "iou_predictions": (1, 1),
                             "low_res_masks": (1, 1, low_res, low_res)})
    return graph
