"""A SAM model whose masks are known analytically: a disk around each prompt's first point.

The decoder is replaced by ``synthetic.cone_decoder``'s cone (its docstring gives the logits):
after SAM's two bilinear stages the mask of token ``t`` is, up to a fraction of a pixel, the
disk of radius ``TOKEN_RADII_1024[t] * max(H, W) / S`` output pixels (times ``max_side / max(H, W)``
when the output is scaled) around the click. The exact answer is SAM's own ``Sam.postprocess_masks``
(PyTorch) of the same logits: ``reference_masks``.

Mask token 0 (``multimask_output=False``) has radius 40; of the multimask tokens 1-3 the best
scored (``TOKEN_SCORES``) is token 2, radius 60. Every other input is ignored.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
from numpy.typing import NDArray

from runtime.manifest import sha256_of_file
from runtime.sam_preprocessing import resized_size_hw, to_model_coords
from synthetic.cone_decoder import (
    IMAGE_SIZE,
    LOW_RES,
    TOKEN_RADII_1024,
    TOKEN_SCORES,
    build_cone_decoder,
    cone_logits,
    grid_centres_1024,
)


def make_cone_model_dir(source_dir: Path, target_dir: Path) -> Path:
    """A copy of the exported model ``source_dir`` whose decoders (``decoder.onnx``, ``decoder_web.onnx``)
    are the cone (fp16 variants dropped)."""
    manifest = json.loads((source_dir / "manifest.json").read_text())
    target_dir.mkdir(parents=True, exist_ok=True)
    models = {role: entry for role, entry in manifest["models"].items()
              if not role.endswith("_fp16") and role != "decoder_web_int8"}  # the tiny model's, not the cone's
    for entry in models.values():
        shutil.copyfile(source_dir / entry["file"], target_dir / entry["file"])
    onnx.save(build_cone_decoder(tuple(models["decoder"]["inputs"][0]["shape"])), target_dir / "decoder.onnx")
    models["decoder"].update(size_bytes=(target_dir / "decoder.onnx").stat().st_size,
                             sha256=sha256_of_file(target_dir / "decoder.onnx"))
    if "decoder_web" in models:  # the browser's decoder: the same cone, post-processed in the graph
        web_file = target_dir / models["decoder_web"]["file"]
        onnx.save(build_cone_web_decoder(int(models["decoder"]["inputs"][0]["shape"][1])), web_file)
        models["decoder_web"].update(size_bytes=web_file.stat().st_size, sha256=sha256_of_file(web_file))
    manifest.update(models=models, weights={"origin": "cone test decoder"})
    (target_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return target_dir


def torch_postprocess(low_res: NDArray[np.float32], input_size_hw: tuple[int, int],
                      out_size_hw: tuple[int, int]) -> NDArray[np.float32]:
    """SAM's own ``Sam.postprocess_masks`` (PyTorch) of BxCxLxL logits: float32 BxCxH'xW' logits."""
    import torch
    from segment_anything.modeling.sam import Sam

    sam_geometry = SimpleNamespace(image_encoder=SimpleNamespace(img_size=IMAGE_SIZE))
    with torch.no_grad():
        out = Sam.postprocess_masks(sam_geometry, torch.from_numpy(np.ascontiguousarray(low_res)),  # type: ignore[arg-type]
                                    input_size_hw, out_size_hw)
    return np.asarray(out.numpy(), np.float32)


def reference_logits(clicks_xy: list[tuple[float, float]], orig_size_hw: tuple[int, int],
                     out_size_hw: tuple[int, int] | None = None, token: int = 0) -> NDArray[np.float32]:
    """Each click's mask logits as SAM computes them: float32 (K, H', W'), output pixels.

    ``clicks_xy``: (x, y) in pixels of the upright photo, each its own prompt.
    """
    coords = to_model_coords(np.asarray(clicks_xy, np.float64).reshape(-1, 1, 2), orig_size_hw, IMAGE_SIZE)
    low = cone_logits(coords)[:, token:token + 1]
    return torch_postprocess(low, resized_size_hw(orig_size_hw, IMAGE_SIZE), out_size_hw or orig_size_hw)[:, 0]


def reference_masks(clicks_xy: list[tuple[float, float]], orig_size_hw: tuple[int, int],
                    out_size_hw: tuple[int, int] | None = None, token: int = 0) -> NDArray[np.bool_]:
    """Each click's mask as SAM renders it: bool (K, H', W') (logits > 0)."""
    return reference_logits(clicks_xy, orig_size_hw, out_size_hw, token) > 0


#: A pixel whose reference logit is this close to 0 may fall either way (float rounding).
TIE_LOGIT = 1e-4


def assert_masks_match(got: NDArray[np.bool_], logits: NDArray[np.float32]) -> None:
    """``got`` equals ``logits > 0`` except at pixels within float rounding of the threshold."""
    assert got.shape == logits.shape, (got.shape, logits.shape)
    differing = got != (logits > 0)
    assert np.all(np.abs(logits[differing]) < TIE_LOGIT), f"{int(differing.sum())} pixels differ from SAM's"


def assert_box_and_area_match(box_xyxy: tuple[int, int, int, int] | None, area: int,
                              logits: NDArray[np.float32]) -> None:
    """A mask's reported box and area are those of ``logits > 0`` up to ties (one mask: (H', W'))."""
    from runtime.masks import box_xyxy as box_of

    strict, loose = logits > TIE_LOGIT, logits > -TIE_LOGIT
    assert int(strict.sum()) <= area <= int(loose.sum()), (area, int(strict.sum()), int(loose.sum()))
    inner, outer = box_of(strict), box_of(loose)
    if inner is None or outer is None or box_xyxy is None:
        assert box_xyxy == inner == outer, (box_xyxy, inner, outer)
        return
    assert all(o <= b <= i for o, b, i in zip(outer[:2], box_xyxy[:2], inner[:2])), (box_xyxy, inner, outer)
    assert all(i <= b <= o for o, b, i in zip(outer[2:], box_xyxy[2:], inner[2:])), (box_xyxy, inner, outer)


def analytic_disks(clicks_xy: list[tuple[float, float]], orig_size_hw: tuple[int, int],
                   out_size_hw: tuple[int, int], token: int = 0) -> NDArray[np.float32]:
    """Signed distance to each click's circle, float32 (K, H', W') output pixels (positive inside).

    The circle: centre the click scaled to the output, radius ``TOKEN_RADII_1024[token]`` model-frame
    pixels in output pixels (the model frame's long side is ``IMAGE_SIZE``)."""
    radius = TOKEN_RADII_1024[token] * max(out_size_hw) / IMAGE_SIZE
    scale_y, scale_x = out_size_hw[0] / orig_size_hw[0], out_size_hw[1] / orig_size_hw[1]
    rows = np.arange(out_size_hw[0], dtype=np.float32)[:, None] + np.float32(0.5)
    cols = np.arange(out_size_hw[1], dtype=np.float32)[None, :] + np.float32(0.5)
    return np.stack([np.float32(radius) - np.hypot(cols - np.float32(x * scale_x), rows - np.float32(y * scale_y))
                     for x, y in clicks_xy]).astype(np.float32)


def _torch_cone_decoder():  # type: ignore[no-untyped-def]
    """The cone decoder in PyTorch (``cone_logits``'s arithmetic), for tracing ``decoder_web.onnx``."""
    import torch

    class ConeDecoder(torch.nn.Module):
        """``DecoderWrapper``'s signature; every input but the first point's coordinates counts 0 times
        (kept, so that the traced graph has all of ``WEB_DECODER_INPUTS``)."""

        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):  # type: ignore[no-untyped-def]
            grid = torch.from_numpy(grid_centres_1024())
            first = point_coords[:, 0, :]
            dx2 = torch.square(grid[None, :] - first[:, 0:1])  # (B, L) along x
            dy2 = torch.square(grid[None, :] - first[:, 1:2])  # (B, L) along y
            dist = torch.sqrt(dy2[:, :, None] + dx2[:, None, :])
            radii = torch.tensor(TOKEN_RADII_1024, dtype=torch.float32)[None, :, None, None]
            unused = (image_embeddings.sum() + point_labels.sum() + mask_input.sum() + has_mask_input.sum()) * 0.0
            scores = torch.tensor(TOKEN_SCORES, dtype=torch.float32)[None, :].expand(point_coords.shape[0], 4)
            return radii - dist[:, None] + unused, scores

    return ConeDecoder()


def build_cone_web_decoder(embed_dim: int = 256) -> onnx.ModelProto:
    """The cone as ``decoder_web.onnx`` (export/web_decoder.py): token 0's disk with the post-processing."""
    from export.export_sam import DEFAULT_OPSET
    from export.web_decoder import trace_post_processed_decoder

    return trace_post_processed_decoder(_torch_cone_decoder(), IMAGE_SIZE, embed_dim, (LOW_RES // 4, LOW_RES // 4),
                                        DEFAULT_OPSET)
