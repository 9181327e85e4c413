"""Export a SAM checkpoint to verified ONNX models: encoder.onnx, decoder.onnx, the pre/post-processing
graphs preprocess.onnx and postprocess.onnx, the cut-out's resize cutout_resize.onnx, and manifest.json.

    python export/export_sam.py --model-type vit_b --output models/vit_b
    python export/export_sam.py --model-type vit_b --checkpoint sam_vit_b_01ec64.pth --output models/vit_b
    python export/export_sam.py --model-type tiny --random-weights --seed 0 --output models/tiny
    python export/export_sam.py --model-type vit_t --random-weights --int8 --output models/vit_t

Without ``--checkpoint`` or ``--random-weights`` the official checkpoint is downloaded
(SHA-256 checked) into ``SAM_CHECKPOINT_CACHE`` (default ``~/.cache/sam-holds/checkpoints``).
After writing the models, parity with PyTorch is checked and recorded in the manifest; the
export fails when fp32 parity is outside tolerance (fp16 parity is recorded only). Each CPU
precision tier's parity (f32, bf16 where the CPU has it, int8 with ``--int8``) is recorded
under ``parity.cpu_tiers``; ``SAM_CPU_PRECISION=auto`` runs a lower tier only when it passes
the gate there (``runtime.cpu_precision``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import onnx
import torch
from PIL import Image
from segment_anything.modeling import Sam

from export import exporters, prepost_graphs
from export.checkpoints import CheckpointDownloadError, cache_dir, fetch_checkpoint, mirrored
from export.parity import ParityError, check_parity, open_engine
from export.quantize import CalibrationError, calibration_feeds, calibration_images, quantize_graph
from export.sam_models import (
    MODEL_TYPES,
    CheckpointMismatch,
    CheckpointUnreadable,
    build_random,
    load_checkpoint,
    predictor_for,
)
from export.tier_parity import tier_parity
from export.web_decoder import WEB_DECODER_FILE, trace_web_decoder
from export.web_decoder_int8 import (
    WEB_DECODER_INT8_FILE,
    WEB_DECODER_INT8_ROLE,
    quantize_web_decoder,
    web_int8_parity,
)
from runtime.manifest import MANIFEST_NAME, Manifest, ModelFile, sha256_of_file
from synthetic.test_images import synthetic_image

log = logging.getLogger("export_sam")

DEFAULT_OPSET = 17
#: Opsets the export supports (torch 2.14.1's TorchScript exporter): below 12 there is no
#: Einsum (SAM's attention needs it); 20 is that exporter's highest.
MIN_OPSET, MAX_OPSET = 12, 20


class ExportError(RuntimeError):
    """A user-facing export failure; ``main`` prints it and exits non-zero."""


@dataclass(frozen=True)
class LoadedModel:
    """A SAM model plus a description of where its weights came from (for the manifest)."""

    sam: Sam
    weights: dict[str, Any]


def load_model(model_type: str, checkpoint: Path | None, random_weights: bool, seed: int) -> LoadedModel:
    """Build ``model_type`` from a checkpoint file, seeded random weights, or the official download."""
    spec = MODEL_TYPES[model_type]
    if random_weights:
        return LoadedModel(build_random(model_type, seed), {"origin": "random", "seed": seed})
    if checkpoint is None:
        if spec.checkpoint_url is None or spec.checkpoint_sha256 is None:
            raise ExportError(f"model type {model_type} has no official checkpoint: pass --checkpoint or --random-weights")
        try:
            checkpoint = fetch_checkpoint(mirrored(spec.checkpoint_url), spec.checkpoint_sha256, cache_dir())
        except CheckpointDownloadError as exc:
            raise ExportError(str(exc)) from exc
        origin = "official"
    else:
        origin = "checkpoint"
    if not checkpoint.is_file():
        raise ExportError(f"checkpoint file {checkpoint} does not exist")
    try:
        sam = load_checkpoint(model_type, checkpoint)
    except (CheckpointMismatch, CheckpointUnreadable) as exc:
        raise ExportError(str(exc)) from exc
    except OSError as exc:
        raise ExportError(f"cannot read checkpoint {checkpoint}: {exc}") from exc
    return LoadedModel(sam, {"origin": origin, "file": checkpoint.name, "sha256": sha256_of_file(checkpoint)})


def _float32_constants(values: torch.Tensor) -> tuple[float, float, float]:
    """The shortest decimals that round to the buffer's float32 values (123.675, not 123.67500305)."""
    a, b, c = (float(str(np.float32(v))) for v in values.flatten().tolist())
    return a, b, c


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("torch", "segment-anything", "mobilesam-mirror", "timm", "onnx", "onnxruntime", "onnxconverter-common",
                    "openvino", "nncf", "numpy", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _prepare_output(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ExportError(f"output directory {output} is not writable: {exc.strerror or exc}") from exc


def export_model(loaded: LoadedModel, model_type: str, output: Path, opset: int = DEFAULT_OPSET,
                 fp16: bool = False, skip_parity: bool = False, external_data: bool = False,
                 int8: bool = False, calibration_dir: Path | None = None) -> Manifest:
    """Write encoder/decoder (and fp16 or int8 variants), check parity, write and return the manifest."""
    _prepare_output(output)
    calibration = calibration_images(calibration_dir) if int8 else []  # a bad --calibration-dir fails first
    (output / MANIFEST_NAME).unlink(missing_ok=True)
    sam = loaded.sam
    log.info("tracing the image encoder (%s)", model_type)
    encoder_graph = exporters.trace_encoder(sam, opset)
    log.info("tracing the prompt decoder")
    decoder_graph = exporters.trace_decoder(sam, opset)
    models: dict[str, ModelFile] = {
        "encoder": exporters.save_model(encoder_graph, output / "encoder.onnx", "encoder", "fp32", external_data),
        "decoder": exporters.save_model(decoder_graph, output / "decoder.onnx", "decoder", "fp32", external_data),
    }
    if fp16:
        log.info("converting to fp16")
        models["encoder_fp16"] = exporters.save_model(
            exporters.to_fp16(encoder_graph), output / "encoder_fp16.onnx", "encoder_fp16", "fp16", external_data)
        models["decoder_fp16"] = exporters.save_model(
            exporters.to_fp16(decoder_graph), output / "decoder_fp16.onnx", "decoder_fp16", "fp16", external_data)
    log.info("tracing the browser decoder (%s)", WEB_DECODER_FILE)
    models["decoder_web"] = exporters.save_model(trace_web_decoder(sam, opset), output / WEB_DECODER_FILE,
                                                 "decoder_web", "fp32")
    del encoder_graph, decoder_graph
    manifest = Manifest(
        model_type=model_type,
        image_size=sam.image_encoder.img_size,
        pixel_mean=_float32_constants(sam.pixel_mean),
        pixel_std=_float32_constants(sam.pixel_std),
        mask_threshold=float(sam.mask_threshold),
        num_mask_tokens=int(sam.mask_decoder.num_mask_tokens),
        models=models,
        weights=loaded.weights,
        opset=opset,
        versions=_versions(),
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    log.info("building the pre- and post-processing graphs")
    models["preprocess"] = exporters.save_model(
        prepost_graphs.build_preprocess(manifest.image_size, manifest.pixel_mean, manifest.pixel_std),
        output / "preprocess.onnx", "preprocess", "fp32")
    models["postprocess"] = exporters.save_model(
        prepost_graphs.build_postprocess(manifest.image_size, int(sam.prompt_encoder.mask_input_size[0]),
                                         manifest.num_mask_tokens, manifest.mask_threshold),
        output / "postprocess.onnx", "postprocess", "fp32")
    models["cutout_resize"] = exporters.save_model(prepost_graphs.build_cutout_resize(), output / "cutout_resize.onnx",
                                                   "cutout_resize", "fp32")
    if int8:
        models.update(_int8_models(manifest, output, calibration, external_data))
    models[WEB_DECODER_INT8_ROLE] = _web_decoder_int8(output)
    parity: dict[str, Any] = {"skipped": True} if skip_parity else _parity(sam, model_type, output, manifest, fp16)
    if not skip_parity:  # without a parity record the page keeps the fp32 browser decoder
        parity[WEB_DECODER_INT8_ROLE] = web_int8_parity(manifest, output, WEB_DECODER_FILE, WEB_DECODER_INT8_FILE)
    manifest = dataclasses.replace(manifest, parity=parity)
    (output / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")
    return manifest


def _web_decoder_int8(output: Path) -> ModelFile:
    """decoder_web_int8.onnx: the browser decoder quantised (``export.web_decoder_int8``)."""
    log.info("quantising the browser decoder (quantize_dynamic QUInt8)")
    target = output / WEB_DECODER_INT8_FILE
    quantize_web_decoder(output / WEB_DECODER_FILE, target)
    return exporters.save_model(onnx.load(str(target)), target, WEB_DECODER_INT8_ROLE, "int8")


def _int8_models(manifest: Manifest, output: Path, images: list[Image.Image],
                 external_data: bool) -> dict[str, ModelFile]:
    """NNCF-quantised encoder_int8.onnx and decoder_int8.onnx, calibrated on ``images`` through the fp32
    serving engine."""
    log.info("quantising to int8 with NNCF on %d calibration images", len(images))
    engine = open_engine(manifest, output, manifest.models["encoder"].file, manifest.models["decoder"].file, "numpy")
    encoder_feeds, decoder_feeds = calibration_feeds(engine, images)
    models = {}
    for role, feeds in (("encoder", encoder_feeds), ("decoder", decoder_feeds)):
        graph = quantize_graph(output / manifest.models[role].file, feeds)
        models[f"{role}_int8"] = exporters.save_model(graph, output / f"{role}_int8.onnx", f"{role}_int8", "int8",
                                                      external_data)
    return models


def _parity(sam: Sam, model_type: str, output: Path, manifest: Manifest, fp16: bool) -> dict[str, Any]:
    """Parity through the serving engine: fp32 with Pillow/numpy pre/post-processing (enforced), fp32
    with the pre/post graphs (mask IoU; enforced for real weights), and fp16 (recorded; may not run on CPU).

    The graphs' antialiased float resize is within a grey level or two of Pillow's, not equal. A
    trained model's masks do not notice; random weights give noise masks, whose edges are
    everywhere, so there a grey level moves many pixels (seed 0's tiny model: IoU 0.988 on one
    case). For random weights the graph numbers are therefore recorded, not enforced.
    """
    log.info("checking parity with PyTorch (SamPredictor) through the serving engine")
    predictor = predictor_for(model_type, sam)
    size_hw = (600, 800)
    with torch.no_grad():
        predictor.set_image(synthetic_image(size_hw))
    results: dict[str, Any] = {}
    fp32 = check_parity(sam, open_engine(manifest, output, "encoder.onnx", "decoder.onnx", "numpy"), "fp32", size_hw,
                        enforce=False, predictor=predictor)
    results["fp32"] = fp32.to_json()
    graphs = check_parity(sam, open_engine(manifest, output, "encoder.onnx", "decoder.onnx", "graph"), "fp32", size_hw,
                          enforce=False, predictor=predictor, pipeline="graph")
    random_weights = manifest.weights.get("origin") == "random"
    results["fp32_graphs"] = {**graphs.to_json(), "enforced": not random_weights}
    if random_weights and graphs.failures:
        log.warning("random weights: the pre/post graphs' parity is recorded, not enforced: %s", "; ".join(graphs.failures))
    if fp16:
        try:
            half = check_parity(sam, open_engine(manifest, output, "encoder_fp16.onnx", "decoder_fp16.onnx", "numpy"),
                                "fp16", size_hw, enforce=False, predictor=predictor)
            results["fp16"] = {**half.to_json(), "enforced": False}
        except Exception as exc:  # noqa: BLE001 - recorded, fp16 is not enforced on CPU
            results["fp16"] = {"enforced": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    results["cpu_tiers"] = tier_parity(sam, manifest, output, predictor, size_hw)
    failures = [f"fp32: {f}" for f in fp32.failures]
    if not random_weights:
        failures += [f"fp32 with the pre/post graphs: {f}" for f in graphs.failures]
    if failures:
        raise ParityError("the ONNX models disagree with PyTorch: " + "; ".join(failures))
    return results


def _opset(text: str) -> int:
    """argparse type: an opset the exporter supports."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not MIN_OPSET <= value <= MAX_OPSET:
        raise argparse.ArgumentTypeError(f"{value} is not supported; use {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-type", required=True, choices=list(MODEL_TYPES))
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="a SAM checkpoint (.pth) matching --model-type")
    source.add_argument("--random-weights", action="store_true", help="seeded random weights (tests, offline)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights (default 0)")
    parser.add_argument("--output", type=Path, required=True, help="directory for the ONNX files and manifest")
    parser.add_argument("--fp16", action="store_true", help="also write fp16 variants for GPU providers")
    parser.add_argument("--int8", action="store_true",
                        help="also write NNCF int8 graphs for the CPU tier (SAM_CPU_PRECISION=int8|auto)")
    parser.add_argument("--calibration-dir", type=Path,
                        help="with --int8: calibrate on these .jpg/.png photos (default: synthetic walls)")
    parser.add_argument("--opset", type=_opset, default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})")
    parser.add_argument("--external-data", action="store_true",
                        help="store weights in <file>.data beside each graph (automatic above 1.8 GB)")
    parser.add_argument("--skip-parity", action="store_true", help="skip the PyTorch parity check (not advised)")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose or os.environ.get("CI") is None else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.seed != 0 and not args.random_weights:
        print("error: --seed only applies with --random-weights", file=sys.stderr)
        return 2
    if args.calibration_dir is not None and not args.int8:
        print("error: --calibration-dir only applies with --int8", file=sys.stderr)
        return 2
    try:
        loaded = load_model(args.model_type, args.checkpoint, args.random_weights, args.seed)
        if loaded.weights["origin"] == "random":
            log.warning("random weights: the exported model is for tests; its masks are meaningless")
        manifest = export_model(loaded, args.model_type, args.output, args.opset, args.fp16,
                                args.skip_parity, args.external_data, args.int8, args.calibration_dir)
    except (ExportError, ParityError, CalibrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except onnx.checker.ValidationError as exc:
        print(f"error: the exported graph is invalid: {exc}", file=sys.stderr)
        return 1
    except torch.onnx.errors.OnnxExporterError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: the ONNX export failed: {first_line}", file=sys.stderr)
        return 1
    fp32 = manifest.parity.get("fp32")
    graphs = manifest.parity.get("fp32_graphs")
    summary = "parity skipped" if fp32 is None or graphs is None else (
        f"parity: embeddings rel err {fp32['embedding_max_rel']:.2e}, "
        f"worst mask IoU {min(c['mask_iou_min'] for c in fp32['cases']):.4f} "
        f"({min(c['mask_iou_min'] for c in graphs['cases']):.4f} with the pre/post graphs)"
    )
    print(f"exported {args.model_type} to {args.output} ({summary})")
    for tier, record in manifest.parity.get("cpu_tiers", {}).items():
        print(f"  {tier} tier: " + (record["error"] if "error" in record else
              f"per-click mask IoU mean {record['mask_iou_mean']:.4f}, worst {record['mask_iou_worst']:.4f}, "
              f"gate {'passed' if record['passes_gate'] else 'failed'}{'' if record['enforced'] else ' (random weights: not used by auto)'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
