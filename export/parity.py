"""Numerical parity of exported ONNX models against ``segment_anything.SamPredictor``.

Runs the PyTorch reference and ONNX Runtime (CPU) on the same synthetic image and on prompt
sets other than the tracing dummy: 1, 3 and 6 points, a box, a mask input, multimask
output, and a batch of independent clicks in one decoder call. Full-resolution masks go
through the runtime's own post-processing, so the serving path is what is checked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from numpy.typing import NDArray
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from runtime import postprocess
from runtime.masks import mask_iou
from runtime.preprocess import Preprocessor, to_model_coords
from synthetic.test_images import synthetic_image

#: fp32 tolerances: relative error = max |onnx - torch| / max |torch|.
FP32_TOLERANCES = {"embedding_rel": 1e-3, "logits_rel": 1e-3, "iou_pred_abs": 1e-3, "mask_iou_min": 0.99}


class ParityError(RuntimeError):
    """Exported models disagree with PyTorch beyond tolerance; lists every failing check."""


@dataclass
class CaseResult:
    """Errors of one prompt case (all prompts of the case together)."""

    name: str
    logits_max_abs: float
    logits_max_rel: float
    iou_pred_max_abs: float
    mask_iou_min: float


@dataclass
class ParityReport:
    """All parity numbers of one precision; ``failures`` is empty when within tolerance."""

    precision: str
    image_size_hw: tuple[int, int]
    embedding_max_abs: float
    embedding_max_rel: float
    cases: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = not self.failures
        return data


@dataclass(frozen=True)
class Prompt:
    """One SamPredictor call: points (N, 2) (x, y) original pixels, labels (N,), optional box/mask."""

    points: NDArray[np.float32] | None
    labels: NDArray[np.float32] | None
    box_xyxy: NDArray[np.float32] | None = None
    use_previous_mask: bool = False


def _relative(a: NDArray[Any], b: NDArray[Any]) -> tuple[float, float]:
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return diff, diff / scale if scale > 0 else diff


def _decoder_feed(embedding: NDArray[np.float32], prompts: list[Prompt], orig_size_hw: tuple[int, int],
                  image_size: int, previous: NDArray[np.float32] | None) -> dict[str, NDArray[np.float32]]:
    """Decoder inputs for prompts of equal point count, as SamPredictor would build them."""
    coords, labels, masks, flags = [], [], [], []
    for prompt in prompts:
        pts = np.zeros((0, 2), np.float32) if prompt.points is None else prompt.points
        lab = np.zeros((0,), np.float32) if prompt.labels is None else prompt.labels
        if prompt.box_xyxy is not None:
            pts = np.concatenate([pts, prompt.box_xyxy.reshape(2, 2)])
            lab = np.concatenate([lab, np.array([2, 3], np.float32)])
        else:
            pts = np.concatenate([pts, np.zeros((1, 2), np.float32)])
            lab = np.concatenate([lab, np.array([-1], np.float32)])
        coords.append(to_model_coords(pts, orig_size_hw, image_size))
        labels.append(lab.astype(np.float32))
        if prompt.use_previous_mask and previous is not None:
            masks.append(previous)
            flags.append(1.0)
        else:
            masks.append(np.zeros((1, 256, 256), np.float32))
            flags.append(0.0)
    return {
        "image_embeddings": embedding,
        "point_coords": np.stack(coords).astype(np.float32),
        "point_labels": np.stack(labels).astype(np.float32),
        "mask_input": np.stack(masks).astype(np.float32),
        "has_mask_input": np.asarray(flags, np.float32),
    }


def _prompt_cases(size_hw: tuple[int, int]) -> list[tuple[str, list[Prompt], bool]]:
    """(name, prompts decoded together in one call, multimask) for the parity run."""
    height, width = size_hw
    rng = np.random.default_rng(7)

    def points(n: int) -> NDArray[np.float32]:
        return np.stack([rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)], axis=1).astype(np.float32)

    def labels(n: int) -> NDArray[np.float32]:
        return (np.arange(n) % 3 != 2).astype(np.float32)

    box = np.array([width * 0.2, height * 0.25, width * 0.7, height * 0.8], np.float32)
    return [
        ("one_click", [Prompt(points(1), np.ones(1, np.float32))], False),
        ("three_points", [Prompt(points(3), labels(3))], False),
        ("six_points", [Prompt(points(6), labels(6))], False),
        ("box_and_point", [Prompt(points(1), np.ones(1, np.float32), box)], False),
        ("box_only", [Prompt(None, None, box)], False),
        ("mask_input", [Prompt(points(2), labels(2), use_previous_mask=True)], False),
        ("multimask", [Prompt(points(1), np.ones(1, np.float32))], True),
        ("batch_of_8_clicks", [Prompt(points(1), np.ones(1, np.float32)) for _ in range(8)], False),
    ]


def check_parity(sam: Sam, encoder_path: Path, decoder_path: Path, precision: str,
                 image_size_hw: tuple[int, int] = (600, 800), enforce: bool = True,
                 predictor: SamPredictor | None = None) -> ParityReport:
    """Compare ONNX Runtime (CPU) with ``SamPredictor`` on ``sam``; raise ``ParityError`` if enforced.

    ``predictor`` may carry an image already set (the same synthetic image) to reuse the
    expensive PyTorch encoder run between precisions.
    """
    image = synthetic_image(image_size_hw)
    if predictor is None:
        predictor = SamPredictor(sam)
        with torch.no_grad():
            predictor.set_image(image)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    encoder = ort.InferenceSession(str(encoder_path), options, providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(decoder_path), options, providers=["CPUExecutionProvider"])
    image_size = sam.image_encoder.img_size
    preprocessor = Preprocessor(image_size, tuple(sam.pixel_mean.flatten().tolist()),  # type: ignore[arg-type]
                                tuple(sam.pixel_std.flatten().tolist()))  # type: ignore[arg-type]
    prepared = preprocessor.prepare(Image.fromarray(image))
    embedding = encoder.run(None, {"image": prepared.tensor})[0]
    reference = predictor.features.detach().cpu().numpy()
    emb_abs, emb_rel = _relative(embedding, reference)
    report = ParityReport(precision, image_size_hw, emb_abs, emb_rel, tolerances=dict(FP32_TOLERANCES))
    if emb_rel > FP32_TOLERANCES["embedding_rel"]:
        report.failures.append(f"image embeddings: relative error {emb_rel:.3g} > {FP32_TOLERANCES['embedding_rel']}")
    plan = postprocess.plan_masks(256, image_size, prepared.input_size_hw, prepared.orig_size_hw)
    previous: NDArray[np.float32] | None = None
    for name, prompts, multimask in _prompt_cases(image_size_hw):
        feed = _decoder_feed(embedding, prompts, prepared.orig_size_hw, image_size, previous)
        low_res, iou_pred = decoder.run(None, feed)
        tokens = slice(1, 4) if multimask else slice(0, 1)
        worst = CaseResult(name, 0.0, 0.0, 0.0, 1.0)
        for index, prompt in enumerate(prompts):
            with torch.no_grad():
                ref_masks, ref_scores, ref_low = predictor.predict(
                    point_coords=prompt.points, point_labels=prompt.labels, box=prompt.box_xyxy,
                    mask_input=previous if prompt.use_previous_mask else None,
                    multimask_output=multimask,
                )
            if name == "one_click":
                previous = ref_low[:1].astype(np.float32)
            got_low = low_res[index, tokens]
            abs_err, rel_err = _relative(got_low, ref_low)
            iou_err, _ = _relative(iou_pred[index, tokens], ref_scores)
            ious = [
                mask_iou(postprocess.render(postprocess.cell_mask(got_low[k], plan), plan), ref_masks[k])
                for k in range(got_low.shape[0])
            ]
            worst = CaseResult(name, max(worst.logits_max_abs, abs_err), max(worst.logits_max_rel, rel_err),
                               max(worst.iou_pred_max_abs, iou_err), min(worst.mask_iou_min, *ious))
        report.cases.append(worst)
        if worst.logits_max_rel > FP32_TOLERANCES["logits_rel"]:
            report.failures.append(f"{name}: mask logits relative error {worst.logits_max_rel:.3g}")
        if worst.iou_pred_max_abs > FP32_TOLERANCES["iou_pred_abs"]:
            report.failures.append(f"{name}: IoU prediction error {worst.iou_pred_max_abs:.3g}")
        if worst.mask_iou_min < FP32_TOLERANCES["mask_iou_min"]:
            report.failures.append(f"{name}: full-resolution mask IoU {worst.mask_iou_min:.4f}")
    if enforce and report.failures:
        raise ParityError(f"{precision} ONNX models disagree with PyTorch: " + "; ".join(report.failures))
    return report
