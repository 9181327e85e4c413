"""Thin ``nn.Module`` wrappers that define the exported graphs' inputs and outputs.

The decoder wrapper differs from ``segment_anything.utils.onnx.SamOnnxModel`` on purpose:
- it decodes a batch of B independent prompts against one image embedding;
- it returns all four mask tokens' low-res logits and scores, so the runtime can reproduce
  ``SamPredictor.predict(multimask_output=False)`` (token 0) and the multimask outputs
  (tokens 1..3); ``SamOnnxModel(return_single_mask=True)`` picks neither faithfully;
- it has no ``orig_im_size`` input and no in-graph resize or crop (TensorRT cannot build
  shape-tensor inputs; the runtime post-processes in numpy).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import Sam
from torch import nn


class EncoderWrapper(nn.Module):
    """image float32 1x3x1024x1024 (normalized, padded) -> image_embeddings float32 1x256x64x64."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class DecoderWrapper(nn.Module):
    """Prompt encoder + mask decoder for B prompts of N points each.

    Inputs: image_embeddings float32 1x256x64x64; point_coords float32 BxNx2 (x, y) in the
    resized 1024 frame; point_labels float32 BxN (1 fg, 0 bg, 2/3 box corners, -1 padding);
    mask_input float32 Bx1x256x256 logits; has_mask_input float32 B.
    Outputs: low_res_masks float32 Bx4x256x256 logits; iou_predictions float32 Bx4.
    """

    image_pe: torch.Tensor  # 1x256x64x64 dense positional encoding (a buffer)

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.image_size = sam.image_encoder.img_size
        self.register_buffer("image_pe", sam.prompt_encoder.get_dense_pe().detach().clone())

    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """BxNx2 coords, BxN labels -> BxNx256 sparse embeddings (as PromptEncoder does)."""
        encoder = self.prompt_encoder
        coords = (point_coords + 0.5) / self.image_size
        embedding = encoder.pe_layer._pe_encoding(coords)
        labels = point_labels.unsqueeze(-1)
        # torch.where instead of multiplying by casted booleans: no Cast nodes (fp16-safe),
        # and the same values as PromptEncoder's in-place masking.
        embedding = torch.where(labels == -1, encoder.not_a_point_embed.weight, embedding)
        for index in range(encoder.num_point_embeddings):
            weight = encoder.point_embeddings[index].weight
            embedding = torch.where(labels == index, embedding + weight, embedding)
        return embedding

    def embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """Bx1x256x256 logits, B flags -> Bx256x64x64 dense embeddings."""
        flag = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return flag * self.prompt_encoder.mask_downscaling(mask_input) + (1 - flag) * no_mask

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.mask_decoder
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_masks(mask_input, has_mask_input)
        batch = sparse.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
        src = image_embeddings.expand(batch, -1, -1, -1) + dense
        pos_src = self.image_pe.expand(batch, -1, -1, -1)
        _, channels, height, width = src.shape
        hs, src = decoder.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + decoder.num_mask_tokens, :]
        src = src.transpose(1, 2).reshape(batch, channels, height, width)
        upscaled = decoder.output_upscaling(src)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
            dim=1,
        )
        _, up_channels, up_h, up_w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(batch, up_channels, up_h * up_w)).reshape(batch, -1, up_h, up_w)
        iou_predictions = decoder.iou_prediction_head(iou_token_out)
        return masks, iou_predictions
