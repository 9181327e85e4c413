"""Latency of our service against the old PyTorch service, side by side in one run.

    python benchmarks/bench_latency.py [--model-type vit_b] [--checkpoint PATH | --random-weights]
        [--providers cpu,cuda,tensorrt] [--image-sizes 3024x4032] [--repeats N] [--quick] [--out DIR]

Interleaved per repeat, on a new synthetic 12 MP wall photo each time:
1. baseline: the old service in PyTorch (set_image, one predict per click, OR, PNG outputs);
2. ours, cold: a new photo (decode, encoder, batched decoder, post-processing, outputs);
3. ours, warm: the same photo again by image_id, 1, 5 and 20 clicks, compact outputs;
4. end to end over HTTP against the real server process: JSON and raw-image requests, cold
   and warm, plus the server's own overhead on a tiny request;
5. for every execution provider available (others are listed as skipped, with the reason).
It also measures this machine's sgemm rate and reports the encoder as a multiple of the
FLOP floor. Writes results.json, RESULTS.md and latency.png to --out.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx
import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from benchmarks.arguments import size_wh
from benchmarks.baseline import baseline_worker
from benchmarks.floors import ENCODER_TFLOP, cpu_name, package_version, sgemm_gflops
from benchmarks.report import evaluate_targets, summarize_samples, write_all
from export.export_sam import export_model, load_model
from runtime import postprocess
from runtime.cache import EmbeddingCache
from runtime.cpu_backends import openvino_available
from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.outputs import OutputOptions
from runtime.providers import ORT_NAMES, CpuOptions, ProviderConfig, TensorRTOptions
from runtime.settings import RuntimeSettings
from serving.local_endpoint import start_local_endpoint
from serving.responses import JSON, LEGACY_TIMING_NAMES, Prediction, serialise_prediction
from synthetic.wall_photo import WallPhoto, wall_photo

COLD_CLICKS = 5
COMPACT = OutputOptions(result_format="none", mask_format="png1")


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


class BaselineProcess:
    """The old service's algorithm in its own process (see ``baseline_worker``)."""

    def __init__(self, model_type: str, seed: int, checkpoint: Path | None, device: str = "cpu") -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.device = device
        self.connection, child = context.Pipe()
        self.process = context.Process(target=baseline_worker, daemon=True,
                                       args=(child, model_type, seed, str(checkpoint) if checkpoint else None, device))
        self.process.start()
        if self.connection.recv() != "ready":
            raise RuntimeError("the baseline process did not start")

    def request(self, jpeg: bytes, clicks: list[tuple[float, float]]) -> dict[str, Any]:
        self.connection.send((jpeg, clicks))
        result: dict[str, Any] = self.connection.recv()
        return result

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(60)


def hold_shaped_logits(photo: WallPhoto, count: int, input_size_hw: tuple[int, int]) -> list[np.ndarray]:
    """256x256 low-res logits shaped like the photo's largest holds (smooth, one blob each).

    Random-weight masks are noise, which always takes post-processing's dense path; these
    stand in for a trained model's compact hold masks.
    """
    _width, height = photo.upright_size_wh
    scale = input_size_hw[0] / height / 4.0  # original pixels -> 256 low-res frame
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    holds = sorted(photo.holds, key=lambda h: -h.radius)[:count]
    return [np.clip(3.0 * (1.0 - np.hypot(xx - h.x * scale, yy - h.y * scale) / max(h.radius * scale, 1.0)), -8, 8)
            .astype(np.float32) for h in holds]


def prepare_model(args: argparse.Namespace, out: Path) -> tuple[Any, Path, str]:
    """The PyTorch model and its ONNX export (same weights); reuses an earlier export of the same weights."""
    loaded = load_model(args.model_type, args.checkpoint, args.checkpoint is None, args.seed)
    label = f"checkpoint {args.checkpoint.name}" if args.checkpoint else f"random weights, seed {args.seed}"
    model_dir = REPO / "models" / f"bench-{args.model_type}-{loaded.weights.get('seed', 'ckpt')}"
    manifest = model_dir / "manifest.json"
    recorded = json.loads(manifest.read_text()) if manifest.is_file() else {}
    models = recorded.get("models", {})
    if recorded.get("weights") != loaded.weights or not {"postprocess", "encoder_fp16", "decoder_fp16"} <= set(models):
        # fp16 variants too: without them SAM_PRECISION=auto/fp16 on CUDA would measure fp32
        export_model(loaded, args.model_type, model_dir, fp16=True, skip_parity=True)
    return loaded.sam, model_dir, label


def provider_plan(requested: list[str], model_dir: Path) -> tuple[dict[str, RuntimeSettings], dict[str, str]]:
    """Settings per provider variant to run, and the skipped ones with the reason.

    ``cpu`` runs every CPU engine side by side: ONNX Runtime, OpenVINO, and ``auto`` (the
    service's default: OpenVINO encoder, ONNX Runtime decoder).
    """
    available = ort.get_available_providers()
    run: dict[str, RuntimeSettings] = {}
    skipped: dict[str, str] = {}
    no_spin = CpuOptions(spinning=False)  # no busy-waiting threads while the baseline process runs
    if "cpu" in requested:
        engines = ("onnxruntime", "openvino", "auto") if openvino_available() else ("onnxruntime",)
        for engine in engines:
            run[f"cpu-{engine}"] = RuntimeSettings(providers=ProviderConfig(requested=("cpu",), cpu=no_spin),
                                                   cpu_engine=engine)  # type: ignore[arg-type]
        if len(engines) == 1:
            skipped["cpu-openvino"] = skipped["cpu-auto"] = "the openvino package is not installed"
    variants = {"cuda": [("cuda", "fp32"), ("cuda", "fp16")], "tensorrt": [("tensorrt", "fp32"), ("tensorrt", "fp16")]}
    for name in (n for n in requested if n != "cpu"):
        for provider, precision in variants[name]:
            label = f"{provider}-{precision}"
            if ORT_NAMES[provider] not in available:  # type: ignore[index]
                skipped[label] = f"{ORT_NAMES[provider]} is not in this onnxruntime build ({ort.__version__}, {', '.join(available)})"  # type: ignore[index]
                continue
            if provider == "cuda" and precision == "fp16" and not (model_dir / "encoder_fp16.onnx").is_file():
                skipped[label] = "the export has no fp16 graphs (export with --fp16)"
                continue
            config = ProviderConfig(requested=(provider,), require_gpu=True,  # type: ignore[arg-type]
                                    tensorrt=TensorRTOptions(fp16=precision == "fp16"))
            run[label] = RuntimeSettings(providers=config, precision=precision if provider == "cuda" else "auto")  # type: ignore[arg-type]
    return run, skipped


def baseline_device(labels: list[str]) -> str:
    """``cuda`` when a GPU provider is measured and PyTorch sees a GPU (like with like), else ``cpu``."""
    if not any(label.startswith(("cuda", "tensorrt")) for label in labels):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def ours_request(extractor: HoldExtractor, request: ExtractRequest, outputs: OutputOptions) -> dict[str, Any]:
    """One request through the runtime plus the server's own response encoding (JSON)."""
    start = time.perf_counter()
    result = extractor.extract(request)
    serialise_prediction(Prediction(result, outputs, JSON), JSON)
    return {"total_ms": (time.perf_counter() - start) * 1000.0, "stages": dict(result.timings_ms),
            "image_id": result.image_id}


class HttpBench:
    """A real server process on 127.0.0.1 and timed HTTP requests against it."""

    def __init__(self, model_dir: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.endpoint = start_local_endpoint(model_dir, log, {"SAM_PROVIDERS": "cpu", "SAM_LOG_FORMAT": "json",
                                                              "SAM_CPU_SPINNING": "false", **(env or {})},
                                             deadline_s=600)
        self.url = self.endpoint.url
        self.log = log
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def invoke(self, body: bytes, content_type: str, **headers: str) -> dict[str, Any]:
        start = time.perf_counter()
        response = self.client.post("/invocations", content=body, headers={"Content-Type": content_type, **headers})
        total = (time.perf_counter() - start) * 1000.0
        response.raise_for_status()
        data = response.json()
        stages = {k: v for k, v in data.get("timings_ms", {}).items() if k not in LEGACY_TIMING_NAMES}
        stages["encode_and_http_ms"] = max(0.0, total - sum(stages.values()))
        return {"total_ms": total, "stages": stages, "image_id": data.get("image_id"),
                "request_id": response.headers.get("x-request-id")}

    def close(self) -> None:
        self.endpoint.stop()


class Recorder:
    """The run's samples, with a progress bar; ``size_label`` names the photo size when there are several."""

    def __init__(self, steps: int) -> None:
        self.samples: list[dict[str, Any]] = []
        self.size_label = ""
        self.progress = tqdm(total=steps, desc="benchmark", unit="step", file=sys.stderr)

    def record(self, scenario: str, provider: str, measured: dict[str, Any]) -> dict[str, Any]:
        scenario += self.size_label
        total = measured.get("total_ms", sum(measured["stages"].values()))
        self.samples.append({"scenario": scenario, "provider": provider, "total_ms": total, "stages": measured["stages"]})
        self.progress.set_postfix_str(f"{scenario} {total:.0f} ms")
        self.progress.update()
        return measured


def _measure_ours(extractors: dict[str, HoldExtractor], photo: WallPhoto, clicks: list[Click], recorder: Recorder) -> str:
    """Each provider: a cold request (empty cache), warm follow-ups of 1/5/20 clicks, a WebP cut-out.
    Returns the photo's image_id."""
    image_id = ""
    for label, extractor in extractors.items():
        extractor.cache = EmbeddingCache(2 << 30)
        cold = recorder.record("ours cold, 5 clicks, PNG", label, ours_request(
            extractor, ExtractRequest(tuple(clicks[:COLD_CLICKS]), image_bytes=photo.jpeg), OutputOptions()))
        image_id = cold["image_id"]
        for count in (1, 5, 20):
            recorder.record(f"ours warm, {count} click{'s' if count > 1 else ''}, compact", label, ours_request(
                extractor, ExtractRequest(tuple(clicks[:count]), image_id=image_id, need_pixels=False), COMPACT))
        recorder.record("ours warm, 1 click, WebP cut-out", label, ours_request(
            extractor, ExtractRequest(tuple(clicks[:1]), image_id=image_id),
            OutputOptions(result_format="webp", mask_format="png1")))
    return image_id


def _measure_postprocess_only(extractors: dict[str, HoldExtractor], photo: WallPhoto, image_id: str,
                              recorder: Recorder) -> None:
    """numpy post-processing alone of 1 and 20 hold-shaped masks at the photo's size."""
    entry = next(iter(extractors.values())).cache.get(image_id) if extractors else None
    if entry is None:
        return
    plan = postprocess.plan_masks(256, 1024, entry.input_size_hw, entry.orig_size_hw)
    for count in (1, 20):
        logits = hold_shaped_logits(photo, count, entry.input_size_hw)
        start = time.perf_counter()
        postprocess.render_union([postprocess.cell_mask(low, plan) for low in logits], plan)
        elapsed = (time.perf_counter() - start) * 1000.0
        recorder.record(f"post-processing only, {count} hold-shaped mask{'s' if count > 1 else ''}", "numpy",
                        {"total_ms": elapsed, "stages": {"postprocess_ms": elapsed}})


def _measure_http(http: HttpBench, photo: WallPhoto, clicks: list[Click], repeat: int, recorder: Recorder) -> None:
    """The served endpoint: cold JSON and raw-JPEG requests (new bytes each repeat), a warm follow-up."""
    points = [{"x": c.x, "y": c.y} for c in clicks[:COLD_CLICKS]]
    variant = photo.jpeg[:-2] + bytes([repeat % 251]) + photo.jpeg[-2:]  # new bytes: a cold request
    recorder.record("HTTP cold JSON, 5 clicks, PNG", "cpu", http.invoke(json.dumps(
        {"image_base64": base64.b64encode(photo.jpeg).decode(), "points": points}).encode(), "application/json"))
    attributes = "points=" + ";".join(f"{c.x},{c.y}" for c in clicks[:COLD_CLICKS]) + "&result_format=webp&mask_format=png1"
    raw = recorder.record("HTTP cold raw JPEG, 5 clicks, WebP", "cpu", http.invoke(
        variant, "image/jpeg", **{"X-Amzn-SageMaker-Custom-Attributes": attributes}))
    first_tap = photo.jpeg[:-2] + bytes([(repeat + 100) % 251]) + photo.jpeg[-2:]
    recorder.record("HTTP cold raw JPEG, 1 click, compact", "cpu", http.invoke(
        first_tap, "image/jpeg", **{"X-Amzn-SageMaker-Custom-Attributes":
                                    f"points={clicks[0].x},{clicks[0].y}&result_format=none&mask_format=png1"}))
    recorder.record("HTTP warm JSON, 1 click, compact", "cpu", http.invoke(json.dumps(
        {"image_id": raw["image_id"], "points": points[:1],
         "outputs": {"result_format": "none", "mask_format": "png1"}}).encode(), "application/json"))


def _warm_extractors(args: argparse.Namespace, model_dir: Path) -> tuple[dict[str, HoldExtractor], dict[str, str]]:
    """One warmed-up extractor per provider that can run here, and the providers skipped."""
    plans, skipped = provider_plan(args.providers, model_dir)
    extractors = {label: HoldExtractor.from_model_dir(model_dir, settings) for label, settings in plans.items()}
    for extractor in extractors.values():
        extractor.engine.warm_up()
    return extractors, skipped


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sam, model_dir, weights_label = prepare_model(args, out)
    sizes = args.image_sizes
    # Interleaved: repeat r measures every size before repeat r + 1 starts.
    photos = [(size, wall_photo(size[0], size[1], seed=100 + i)) for i in range(args.repeats) for size in sizes]
    extractors, skipped = _warm_extractors(args, model_dir)
    del sam  # the baseline runs in its own process
    baseline = BaselineProcess(args.model_type, args.seed, args.checkpoint, baseline_device(list(extractors)))
    recorder = Recorder(steps=len(photos) * (1 + len(extractors) * 5 + 4 + 2) + 2)
    recorder.progress.set_postfix_str("sgemm")
    gflops = sgemm_gflops(2048 if args.quick else 4096)
    recorder.progress.update()
    http = HttpBench(model_dir, out / "server.log")
    recorder.progress.update()
    try:
        for repeat, (size, photo) in enumerate(photos):
            recorder.size_label = f" @{size[0]}x{size[1]}" if len(sizes) > 1 else ""
            clicks = [Click(x, y) for x, y in photo.clicks(20)]
            recorder.record("baseline PyTorch, 5 clicks, PNG", f"torch-{baseline.device}",
                            baseline.request(photo.jpeg, [(c.x, c.y) for c in clicks[:COLD_CLICKS]]))
            image_id = _measure_ours(extractors, photo, clicks, recorder)
            _measure_postprocess_only(extractors, photo, image_id, recorder)
            _measure_http(http, photo, clicks, repeat, recorder)
        overhead = server_overhead(http, args.repeats * 10)
    finally:
        http.close()
        baseline.close()
        recorder.progress.close()
    return build_report(args, recorder.samples, gflops, weights_label, sizes[0], photos[0][1].jpeg, list(extractors),
                        skipped, overhead)


def server_overhead(http: HttpBench, count: int) -> dict[str, float]:
    """p50 of /ping, and of a tiny cached invocation minus the model stages it reports (ms).

    The tiny request is a 64x48 photo already in the cache, one click, a 1-bit mask only:
    what remains after subtracting its reported stages is HTTP, parsing and JSON.
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 60)).save(buffer, format="PNG")
    first = http.invoke(json.dumps({"image_base64": base64.b64encode(buffer.getvalue()).decode(),
                                    "points": [{"x": 10, "y": 10}]}).encode(), "application/json")
    body = json.dumps({"image_id": first["image_id"], "points": [{"x": 10, "y": 10}],
                       "outputs": {"result_format": "none", "mask_format": "png1"}}).encode()
    overheads, pings, ids = [], [], set()
    for _ in range(count):
        pings.append(_timed(lambda: http.client.get("/ping")) * 1000.0)
        measured = http.invoke(body, "application/json")
        overheads.append(measured["stages"]["encode_and_http_ms"])
        ids.add(measured["request_id"])
    server_side = []
    for line in http.log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("request_id") in ids and "timings_ms" in entry:
            server_side.append(entry["latency_ms"] - sum(entry["timings_ms"].values()))
    return {"ping_p50_ms": float(np.median(pings)), "client_observed_overhead_p50_ms": float(np.median(overheads)),
            "server_overhead_p50_ms": float(np.median(server_side)) if server_side else float("nan"),
            "requests": count}


def build_report(args: argparse.Namespace, samples: list[dict[str, Any]], gflops: float, weights: str,
                 size_wh: tuple[int, int], jpeg: bytes, providers: list[str], skipped: dict[str, str],
                 overhead: dict[str, float]) -> dict[str, Any]:
    summary = summarize_samples(samples)
    tflop = ENCODER_TFLOP[args.model_type]
    floor_ms = tflop * 1e12 / (gflops * 1e9) * 1000.0

    def median(key: str, stage: str | None = None) -> float | None:
        item = summary.get(key)
        if item is None:
            return None
        return item["stages_ms"].get(stage) if stage else item["total_ms"]["median"]

    main = "cpu-auto" if "cpu-auto" in providers else (providers[0] if providers else "cpu")
    at = f" @{size_wh[0]}x{size_wh[1]}" if len(args.image_sizes) > 1 else ""  # ratios use the first size
    engines = {label: {
        "encoder_ms": median(f"{label}/ours cold, 5 clicks, PNG{at}", "encoder_ms"),
        "decoder_1_ms": median(f"{label}/ours warm, 1 click, compact{at}", "decoder_ms"),
        "decoder_20_ms": median(f"{label}/ours warm, 20 clicks, compact{at}", "decoder_ms"),
        "cold_ms": median(f"{label}/ours cold, 5 clicks, PNG{at}"),
        "warm_ms": median(f"{label}/ours warm, 1 click, compact{at}"),
    } for label in providers}
    for row in engines.values():
        row["encoder_vs_floor"] = row["encoder_ms"] / floor_ms if row["encoder_ms"] else None
    ours = engines.get(main, {})
    ours_encoder, warm, cold = ours.get("encoder_ms"), ours.get("warm_ms"), ours.get("cold_ms")
    decoder_1, decoder_20 = ours.get("decoder_1_ms"), ours.get("decoder_20_ms")
    torch_label = next((s["provider"] for s in samples if s["provider"].startswith("torch-")), "torch-cpu")
    torch_encoder = median(f"{torch_label}/baseline PyTorch, 5 clicks, PNG{at}", "encoder_ms")
    baseline = median(f"{torch_label}/baseline PyTorch, 5 clicks, PNG{at}")
    ratios = {
        "encoder_vs_pytorch": ours_encoder / torch_encoder if ours_encoder and torch_encoder else None,
        "encoder_vs_floor": ours_encoder / floor_ms if ours_encoder else None,
        "warm_vs_baseline": warm / baseline if warm and baseline else None,
        "decoder_20_vs_1": decoder_20 / decoder_1 if decoder_20 and decoder_1 else None,
        "server_overhead_ms": overhead.get("server_overhead_p50_ms"),
        "http_cold_raw_ms": median(f"cpu/HTTP cold raw JPEG, 5 clicks, WebP{at}"),
        "http_cold_first_click_ms": median(f"cpu/HTTP cold raw JPEG, 1 click, compact{at}"),
        "http_followup_ms": median(f"cpu/HTTP warm JSON, 1 click, compact{at}"),
        "client_observed_overhead_ms": overhead.get("client_observed_overhead_p50_ms"),
        "cold_vs_baseline": cold / baseline if cold and baseline else None,
        "ping_p50_ms": overhead.get("ping_p50_ms"),
    }
    versions = {name: package_version(name) for name in ("onnxruntime", "openvino", "torch", "numpy", "pillow")}
    return {
        "command": "python benchmarks/bench_latency.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": versions, "model": {"type": args.model_type, "weights": weights},
        "image": {"width": size_wh[0], "height": size_wh[1], "bytes": len(jpeg),
                  "sizes": [f"{w}x{h}" for w, h in args.image_sizes]}, "repeats": args.repeats,
        "sgemm_gflops": gflops, "encoder_tflop": tflop, "encoder_floor_ms": floor_ms,
        "providers": providers, "main_provider": main, "skipped_providers": skipped, "engines": engines,
        "stages_vs_floor": stages_vs_floor(summary, providers, torch_label, at),
        "summary": summary, "ratios": ratios, "targets": evaluate_targets(ratios, args.model_type), "overhead": overhead, "samples": samples,
    }


#: Per-stage floors measured on a lent NVIDIA H100 (issue 13; platform-facts.md), milliseconds, for a
#: 3024x4032 JPEG: nvJPEG decode, antialiased GPU resize, torch.compile bf16 vit_b encoder, five
#: masks upsampled/thresholded/OR-ed/bit-packed/copied, packbits+zlib 1-bit PNG. None: no floor measured.
GPU_FLOOR_MS = {"image_decode_ms": 6.6, "preprocess_ms": 0.26, "encoder_ms": 8.7, "decoder_ms": None,
                "postprocess_ms": 1.0, "output_encode_ms": 5.5}


def stages_vs_floor(summary: dict[str, Any], providers: list[str], torch_label: str, at: str) -> list[dict[str, Any]]:
    """With a GPU provider: one row per stage of a new photo with 5 clicks, ours and the PyTorch
    baseline (on CUDA) beside the measured H100 floor. Empty without a GPU provider."""
    gpu = next((p for p in providers if p.startswith(("tensorrt", "cuda"))), None)
    if gpu is None:
        return []
    ours = summary.get(f"{gpu}/ours cold, 5 clicks, PNG{at}", {}).get("stages_ms", {})
    old = summary.get(f"{torch_label}/baseline PyTorch, 5 clicks, PNG{at}", {}).get("stages_ms", {})
    return [{"stage": stage, "provider": gpu, "ours_ms": ours.get(stage), "baseline_ms": old.get(stage),
             "baseline": torch_label, "floor_ms": floor} for stage, floor in GPU_FLOOR_MS.items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-type", default=None, choices=sorted(ENCODER_TFLOP))
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path)
    source.add_argument("--random-weights", action="store_true", help="seeded random weights (the default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--providers", default="cpu,cuda,tensorrt", help="comma list of cpu, cuda, tensorrt")
    parser.add_argument("--image-sizes", default=None, help="upright WIDTHxHEIGHT (default 3024x4032)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny model, small photo, 2 repeats: a few minutes")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    args = parser.parse_args(argv)
    args.model_type = args.model_type or ("tiny" if args.quick else "vit_b")
    args.image_sizes = [size_wh(s) for s in (args.image_sizes or ("1512x2016" if args.quick else "3024x4032")).split(",")]
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    unknown = set(args.providers) - {"cpu", "cuda", "tensorrt"}
    if unknown:
        parser.error(f"unknown providers: {', '.join(sorted(unknown))}")
    report = run(args)
    paths = write_all(report, args.out)
    print((args.out / "RESULTS.md").read_text())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
