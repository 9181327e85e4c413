"""Numerical parity of exported ONNX models against ``segment_anything.SamPredictor``, through the serving code.

Runs the PyTorch reference and the service's own engine (``runtime.engine.SamEngine`` with
ONNX Runtime CPU runners) on the same synthetic image and on prompt sets other than the
tracing dummy: 1, 3 and 6 points, a box, a mask input, multimask output, and a batch of
independent clicks in one decoder call. Prompts are built by the service's ``build_prompts``
and full-resolution masks come from the engine's mask renderer, so what is checked is what
is served. Two pipelines are checked: ``numpy`` (Pillow/numpy pre- and post-processing, the
CPU default) and ``graph`` (the exported ``preprocess.onnx`` / ``postprocess.onnx``, which
a GPU runs); the graph's antialiased float resize is close to Pillow's, not equal, so its
parity is the mask IoU (and the encoder input's grey-level difference is recorded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
import torch
from numpy.typing import NDArray
from PIL import Image
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from runtime.engine import SamEngine
from runtime.graph_runners import OrtMaskRenderer, OrtPreprocessor
from runtime.holds import Click, PromptMode, build_prompts
from runtime.manifest import Manifest
from runtime.masks import mask_iou
from runtime.ort_runner import OrtDecoder, OrtEncoder
from runtime.sam_preprocessing import to_model_coords
from runtime.tensors import to_host
from synthetic.test_images import synthetic_image

#: fp32 tolerances: relative error = max |onnx - torch| / max |torch|.
FP32_TOLERANCES = {"embedding_rel": 1e-3, "logits_rel": 1e-3, "iou_pred_abs": 1e-3, "mask_iou_min": 0.99}
#: The graph pipeline: only the masks are compared (its resize is close to Pillow's, not equal).
GRAPH_TOLERANCES = {"mask_iou_min": 0.99}

Pipeline = Literal["numpy", "graph"]


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
    """All parity numbers of one precision and pipeline; ``failures`` is empty when within tolerance."""

    precision: str
    image_size_hw: tuple[int, int]
    embedding_max_abs: float
    embedding_max_rel: float
    pipeline: str = "numpy"
    encoder_input_max_grey: float = 0.0
    #: Per-click mask IoU over every mask of every case: mean and worst (the CPU tiers' gate).
    mask_iou_mean: float = 1.0
    mask_iou_worst: float = 1.0
    cases: list[CaseResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tolerances: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = not self.failures
        return data


@dataclass(frozen=True)
class Case:
    """One parity case: clicks and box as a client sends them, the prompt mode, and options."""

    name: str
    clicks: tuple[Click, ...]
    box_xyxy: tuple[float, float, float, float] | None = None
    mode: PromptMode = "per_click"
    multimask: bool = False
    use_previous_mask: bool = False


def _relative(a: NDArray[Any], b: NDArray[Any]) -> tuple[float, float]:
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return diff, diff / scale if scale > 0 else diff


def parity_cases(size_hw: tuple[int, int]) -> list[Case]:
    """The prompt cases of the parity run (points inside an image of ``size_hw``)."""
    height, width = size_hw
    rng = np.random.default_rng(7)

    def clicks(n: int, every_third_negative: bool = False) -> tuple[Click, ...]:
        xs, ys = rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)
        return tuple(Click(float(x), float(y), 0 if every_third_negative and i % 3 == 2 else 1)
                     for i, (x, y) in enumerate(zip(xs, ys)))

    box = (width * 0.2, height * 0.25, width * 0.7, height * 0.8)
    return [
        Case("one_click", clicks(1)),
        Case("three_points", clicks(3, True), mode="single"),
        Case("six_points", clicks(6, True), mode="single"),
        Case("box_and_point", clicks(1), box),
        Case("box_only", (), box),
        Case("mask_input", clicks(2, True), mode="single", use_previous_mask=True),
        Case("multimask", clicks(1), multimask=True),
        Case("batch_of_8_clicks", clicks(8)),
    ]


def open_engine(manifest: Manifest, model_dir: Path, encoder_file: str, decoder_file: str,
                pipeline: Pipeline) -> SamEngine:
    """The serving engine over the given files with ONNX Runtime CPU runners (any precision's files)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3

    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(model_dir / name), options, providers=["CPUExecutionProvider"])

    images = renderer = None
    if pipeline == "graph":
        images = OrtPreprocessor(session(manifest.models["preprocess"].file), "cpu", manifest.image_size)
        renderer = OrtMaskRenderer(session(manifest.models["postprocess"].file), "cpu")
    return SamEngine(manifest, OrtEncoder(session(encoder_file), "cpu"), OrtDecoder(session(decoder_file), "cpu"),
                     images, renderer)


def check_parity(sam: Sam, engine: SamEngine, precision: str, image_size_hw: tuple[int, int] = (600, 800),
                 enforce: bool = True, predictor: SamPredictor | None = None, pipeline: Pipeline = "numpy") -> ParityReport:
    """Compare ``engine`` with ``SamPredictor`` on ``sam``; raise ``ParityError`` if enforced.

    ``predictor`` may carry the same synthetic image already set, to reuse the expensive
    PyTorch encoder run between precisions and pipelines.
    """
    image = synthetic_image(image_size_hw)
    if predictor is None:
        predictor = SamPredictor(sam)
        with torch.no_grad():
            predictor.set_image(image)
    tolerances = dict(FP32_TOLERANCES if pipeline == "numpy" else GRAPH_TOLERANCES)
    prepared = engine.prepare(Image.fromarray(image))
    reference_input = engine.preprocessor.prepare(Image.fromarray(image)).tensor
    grey = float(np.max(np.abs(np.asarray(prepared.tensor) - reference_input) * np.reshape(engine.manifest.pixel_std,
                                                                                           (1, 3, 1, 1))))
    embedding = engine.encode(prepared)
    reference = predictor.features.detach().cpu().numpy()
    emb_abs, emb_rel = _relative(np.asarray(embedding.value), reference)
    report = ParityReport(precision, image_size_hw, emb_abs, emb_rel, pipeline, grey, tolerances=tolerances)
    if "embedding_rel" in tolerances and emb_rel > tolerances["embedding_rel"]:
        report.failures.append(f"image embeddings: relative error {emb_rel:.3g} > {tolerances['embedding_rel']}")
    previous: NDArray[np.float32] | None = None
    ious: list[float] = []
    for case in parity_cases(image_size_hw):
        worst, previous, case_ious = _check_case(engine, predictor, embedding.value, prepared.orig_size_hw,
                                                 prepared.input_size_hw, case, previous)
        report.cases.append(worst)
        ious += case_ious
        for key, value, limit_is_max in (("logits_rel", worst.logits_max_rel, True),
                                         ("iou_pred_abs", worst.iou_pred_max_abs, True),
                                         ("mask_iou_min", worst.mask_iou_min, False)):
            limit = tolerances.get(key)
            if limit is not None and (value > limit if limit_is_max else value < limit):
                report.failures.append(f"{case.name}: {key} {value:.4g} (limit {limit})")
    report.mask_iou_mean, report.mask_iou_worst = float(np.mean(ious)), float(np.min(ious))
    if enforce and report.failures:
        raise ParityError(f"{precision} {pipeline} pipeline disagrees with PyTorch: " + "; ".join(report.failures))
    return report


def _check_case(engine: SamEngine, predictor: SamPredictor, embedding: Any, orig_size_hw: tuple[int, int],
                input_size_hw: tuple[int, int], case: Case, previous: NDArray[np.float32] | None
                ) -> tuple[CaseResult, NDArray[np.float32] | None, list[float]]:
    """Run one case through the engine and the reference: the worst errors over its prompts, the
    mask input for the next case, and every mask's IoU."""
    coords, labels, groups = build_prompts(case.clicks, case.box_xyxy, case.mode)
    model_coords = to_model_coords(coords, orig_size_hw, engine.manifest.image_size)
    mask_input = None
    if case.use_previous_mask and previous is not None:
        mask_input = np.repeat(previous[None], len(groups), axis=0)
    decoded = engine.decode(embedding, model_coords, labels, mask_input)
    low_res = to_host(decoded.low_res_masks)
    tokens = list(range(1, engine.num_mask_tokens)) if case.multimask else [0]
    indices = np.asarray([i * engine.num_mask_tokens + t for i in range(len(groups)) for t in tokens], np.int64)
    rendered = engine.renderer.render(decoded.low_res_masks, indices, input_size_hw, orig_size_hw, 0, True)
    assert rendered.masks is not None
    worst = CaseResult(case.name, 0.0, 0.0, 0.0, 1.0)
    all_ious: list[float] = []
    box = None if case.box_xyxy is None else np.asarray(case.box_xyxy, np.float32)
    for index, group in enumerate(groups):
        points = np.asarray([[case.clicks[i].x, case.clicks[i].y] for i in group], np.float32) if group else None
        point_labels = np.asarray([case.clicks[i].label for i in group], np.float32) if group else None
        with torch.no_grad():
            ref_masks, ref_scores, ref_low = predictor.predict(
                point_coords=points, point_labels=point_labels, box=box,
                mask_input=mask_input[index] if mask_input is not None else None, multimask_output=case.multimask)
        if case.name == "one_click":
            previous = ref_low[:1].astype(np.float32)
        abs_err, rel_err = _relative(low_res[index, tokens], ref_low)
        iou_err, _ = _relative(decoded.iou_predictions[index, tokens], ref_scores)
        got = rendered.masks[index * len(tokens):(index + 1) * len(tokens)]
        ious = [mask_iou(mask.dense(), expected) for mask, expected in zip(got, ref_masks)]
        all_ious += ious
        worst = CaseResult(case.name, max(worst.logits_max_abs, abs_err), max(worst.logits_max_rel, rel_err),
                           max(worst.iou_pred_max_abs, iou_err), min(worst.mask_iou_min, *ious))
    return worst, previous, all_ious
