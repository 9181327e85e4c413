"""Pre- and post-processing per stage, every implementation side by side in one run.

    python benchmarks/bench_prepost.py --out benchmarks          # 12 MP wall photos, 5 repeats (a few minutes here)
    python benchmarks/bench_prepost.py --quick --out out/prepost  # 1.5 MP, 2 repeats (CI's smoke run)

Per repeat, on a new synthetic wall photo (interleaved, so every implementation sees the same
machine state): JPEG decode (Pillow; nvImageCodec on a GPU), SamPredictor's resize/normalize/pad
(Pillow/numpy against ``preprocess.onnx`` on the CPU EP and, with a GPU, the CUDA EP), and mask
rendering of 1, 5 and 20 hold-shaped masks (today's direct numpy calls, the numpy renderer
that serves on CPU, and ``postprocess.onnx`` on the CPU EP / CUDA EP), then output encoding
of the union (1-bit PNG from packed rows, 8-bit PNG, COCO RLE). Each implementation's
masks are compared with today's numpy answer in the same run. Writes prepost.json and
PREPOST.md to --out. ``runtime.prepost_choice.AUTO_CPU_PREPOST`` follows the CPU rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np
import onnxruntime as ort

from benchmarks.arguments import size_wh
from benchmarks.bench_latency import hold_shaped_logits
from benchmarks.floors import cpu_name, package_version
from runtime import postprocess
from runtime.graph_runners import OrtMaskRenderer, OrtPreprocessor
from runtime.image_files import read_image
from runtime.manifest import load_manifest
from runtime.masks import BitMask, mask_iou
from runtime.outputs import write_mask
from runtime.preprocessors import LoadedImage, PillowPreprocessor
from runtime.render import NumpyMaskRenderer, RenderedMasks
from runtime.rle import to_rle
from runtime.sam_preprocessing import PreparedImage, Preprocessor
from synthetic.wall_photo import wall_photo

MASK_COUNTS = (1, 5, 20)


def _session(path: Path, provider: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def _timed(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = call(*args)
    return (time.perf_counter() - start) * 1000.0, value


def _today_numpy(logits: list[np.ndarray], input_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Post-processing as HoldExtractor called it before the renderer seam (direct numpy calls): a
    cell mask and its area (reported per click, and the ``min_area`` filter) per prompt, then the union."""
    plan = postprocess.plan_masks(256, 1024, input_hw, out_hw)
    cells = [postprocess.cell_mask(low, plan) for low in logits]
    for cell in cells:
        cell.area(plan)
    return postprocess.render_union(cells, plan).dense()


@dataclass
class Implementations:
    """Every implementation under test: Pillow/numpy pre-processing, the numpy renderer, and per
    provider (cpu, cuda when present) the pre- and post-processing graphs; nvImageCodec with a GPU."""

    providers: list[str]
    pillow: PillowPreprocessor
    renderer: NumpyMaskRenderer
    graphs: dict[str, tuple[OrtPreprocessor, OrtMaskRenderer]]
    jpeg_reader: Any = None


def _implementations(model_dir: Path) -> Implementations:
    manifest = load_manifest(model_dir, verify_checksums=False)
    size = manifest.image_size
    providers = ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])
    graphs = {p: (OrtPreprocessor(_session(model_dir / "preprocess.onnx", p), p, size),  # type: ignore[arg-type]
                  OrtMaskRenderer(_session(model_dir / "postprocess.onnx", p), p))  # type: ignore[arg-type]
              for p in providers}
    found = Implementations(providers, PillowPreprocessor(Preprocessor(size, manifest.pixel_mean, manifest.pixel_std)),
                            NumpyMaskRenderer(size, manifest.mask_threshold), graphs)
    if "cuda" in providers:
        from runtime.gpu_jpeg_reader import GpuJpegReader

        found.jpeg_reader = GpuJpegReader.create(0)
        graphs["cuda"][0].jpeg_reader = found.jpeg_reader
    return found


@dataclass
class Recorder:
    """Timings of one run (``keep`` false during the warm-up repeat) and each implementation's worst union IoU."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    worst_iou: dict[str, float] = field(default_factory=dict)
    keep: bool = False

    def timed(self, stage: str, implementation: str, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, its time recorded under (stage, implementation) unless warming up."""
        ms, value = _timed(call, *args)
        if self.keep:
            self.samples.append({"stage": stage, "implementation": implementation, "ms": ms})
        return value

    def iou(self, implementation: str, got: np.ndarray, today: np.ndarray) -> None:
        self.worst_iou[implementation] = min(self.worst_iou.get(implementation, 1.0), mask_iou(got, today))


def _time_decode_and_preprocess(found: Implementations, jpeg: bytes, record: Recorder) -> PreparedImage:
    """JPEG decode (Pillow; nvImageCodec) and SamPredictor's pre-processing (Pillow/numpy; graphs)."""
    loaded = LoadedImage.from_pil(record.timed("image_decode", "Pillow", read_image, jpeg))
    if found.jpeg_reader is not None:
        record.timed("image_decode", "nvImageCodec (cuda)", found.graphs["cuda"][0].load, jpeg, 10**9)
    prepared: PreparedImage = record.timed("preprocess", "Pillow/numpy", found.pillow.prepare, loaded)
    for provider, (pre, _) in found.graphs.items():
        record.timed("preprocess", f"graph ({provider} EP)", pre.prepare, loaded)
    return prepared


def _time_postprocess(found: Implementations, logits: list[np.ndarray], input_hw: tuple[int, int],
                      out_hw: tuple[int, int], record: Recorder) -> RenderedMasks:
    """Rendering ``logits`` (hold-shaped, L x L each) by every implementation; the last one's masks."""
    count = len(logits)
    stacked = np.stack(logits)[:, None].repeat(4, axis=1)  # P x 4 x 256 x 256, token 0 used
    indices = np.arange(count, dtype=np.int64) * 4
    stage = f"postprocess, {count} mask{'s' if count > 1 else ''}"
    today = record.timed(stage, "today: direct numpy calls", _today_numpy, logits, input_hw, out_hw)
    rendered = record.timed(stage, "numpy renderer (CPU default)", found.renderer.render, stacked, indices, input_hw,
                            out_hw, 0, False)
    record.iou("numpy renderer", rendered.union.dense(), today)
    for provider, (_, graph) in found.graphs.items():
        key = f"graph ({provider} EP)"
        rendered = record.timed(stage, key, graph.render, stacked, indices, input_hw, out_hw, 0, False)
        record.iou(key, rendered.union.dense(), today)
    return rendered


def _time_encoding(union: BitMask, record: Recorder) -> None:
    for name, encode, value in (("1-bit PNG from packed rows", write_mask, (union, "png1")),
                                ("8-bit PNG", write_mask, (union, "png")),
                                ("COCO RLE", to_rle, (union.dense(),))):
        record.timed("output_encode (5-mask union)", name, encode, *value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    found = _implementations(args.model_dir)
    record = Recorder()
    width, height = args.size
    for repeat in range(args.repeats + 1):  # repeat 0 warms every implementation up and is not recorded
        photo = wall_photo(width, height, seed=300 + repeat)
        record.keep = repeat > 0
        prepared = _time_decode_and_preprocess(found, photo.jpeg, record)
        for count in MASK_COUNTS:
            logits = hold_shaped_logits(photo, count, prepared.input_size_hw)
            rendered = _time_postprocess(found, logits, prepared.input_size_hw, prepared.orig_size_hw, record)
            if count == 5 and record.keep:
                _time_encoding(rendered.union, record)
    return {
        "command": "python benchmarks/bench_prepost.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "gpu": "CUDA EP present" if "cuda" in found.providers else "none"},
        "versions": {name: package_version(name) for name in ("onnxruntime", "numpy", "pillow", "pycocotools")},
        "image": {"width": width, "height": height}, "repeats": args.repeats,
        "summary": _summary(record.samples), "worst_union_iou_vs_today": record.worst_iou, "samples": record.samples,
    }


def _summary(samples: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    stages: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
        stages.setdefault(sample["stage"], {}).setdefault(sample["implementation"], []).append(sample["ms"])
    return {stage: {name: {"median": float(np.median(v)), "min": float(np.min(v)), "n": len(v)}
                    for name, v in rows.items()} for stage, rows in stages.items()}


def write_markdown(report: dict[str, Any], path: Path) -> None:
    machine = report["machine"]
    lines = ["# Pre- and post-processing, side by side", "",
             f"Command: `{report['command']}`  ",
             f"Machine: {machine['cpu']} ({machine['cores']} cores), GPU: {machine['gpu']}, {machine['platform']}  ",
             f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}  ",
             (f"Photo: {report['image']['width']}x{report['image']['height']} JPEG (synthetic wall), "
              f"{report['repeats']} repeats after one warm-up, medians (milliseconds)"), "",
             "| stage | implementation | median | min | x fastest |", "| --- | --- | ---: | ---: | ---: |"]
    for stage, rows in report["summary"].items():
        fastest = min(row["median"] for row in rows.values())
        for name, row in sorted(rows.items(), key=lambda item: item[1]["median"]):
            lines.append(f"| {stage} | {name} | {row['median']:.1f} | {row['min']:.1f} | {row['median'] / fastest:.2f} |")
    lines += ["", "Worst union IoU against today's numpy answer in this run: " + ", ".join(
        f"{k} {v:.6f}" for k, v in report["worst_union_iou_vs_today"].items()), ""]
    path.write_text("\n".join(lines))



def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="an export with preprocess.onnx/postprocess.onnx (default: a tiny export made once)")
    parser.add_argument("--size", type=size_wh, default=None, help="upright WIDTHxHEIGHT (default 3024x4032)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="1.5 MP photos, 2 repeats")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "prepost")
    args = parser.parse_args(argv)
    args.size = args.size or ((1008, 1344) if args.quick else (3024, 4032))
    args.repeats = args.repeats or (2 if args.quick else 5)
    if args.model_dir is None:
        args.model_dir = _tiny_export()
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prepost.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, args.out / "PREPOST.md")
    print((args.out / "PREPOST.md").read_text())
    return 0


def _tiny_export() -> Path:
    """The graphs do not depend on the weights: a tiny export (seconds) provides them."""
    from export.export_sam import LoadedModel, export_model
    from export.sam_models import build_random

    model_dir = REPO / "models" / "bench-prepost-tiny"
    if not (model_dir / "manifest.json").is_file() or not load_manifest(model_dir, False).has_prepost_graphs:
        export_model(LoadedModel(build_random("tiny", 0), {"origin": "random", "seed": 0}), "tiny", model_dir,
                     skip_parity=True)
    return model_dir


if __name__ == "__main__":
    sys.exit(main())
