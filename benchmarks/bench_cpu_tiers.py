"""The CPU precision tiers side by side in one run: engines, HTTP taps, resent taps, GEMM floors.

    python benchmarks/bench_cpu_tiers.py --model-dir models/vit_t [--repeats 3] [--out DIR] [--results-md PATH]
    python benchmarks/bench_cpu_tiers.py --model-dir models/vit_b --photo-size 3024x4032    # vit_b: same flags
    python benchmarks/bench_cpu_tiers.py --model-dir models/tiny --quick --out out/tiers    # smoke run, seconds

For every tier this CPU and export can run (``SAM_CPU_PRECISION`` f32, bf16, int8; the model
exported with ``--int8``; ``SAM_CPU_ENGINE=auto``: the engines ``runtime.cpu_backends.AUTO_CPU_BACKENDS``
names per tier), interleaved per repeat so the machine's load falls on every tier alike:
1. in process (``SamEngine``): the encoder on one prepared wall (float32 1x3x1024x1024 ->
   1x256x64x64), the decoder on 1 and on N prompts (``--prompts``, 20; one click each, 1024 frame);
2. through HTTP, a real server process per tier (``benchmarks.tier_http``): first tap on a new
   photo, follow-up tap, N earlier taps resent + 1 new with the prompt cache on and off, and
   the pinned bytes of a session as its image gathers prompts; then the first and follow-up taps
   again with hold-shaped masks (``measure_hold_taps``): random weights give noise masks, the
   worst case of mask post-processing and PNG encoding, where a hold is a compact blob;
3. the floors, measured in the same run (``benchmarks.floors``): sgemm, OpenVINO f32/bf16/int8
   and ONNX Runtime's u8s8 GEMM, each with the kernel that ran.
Writes cpu_tiers.json and CPU_TIERS.md to --out; ``--results-md`` also puts the tables into that
file's CPU-tier section (benchmarks/RESULTS.md keeps it when bench_latency.py rewrites the rest).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np

from benchmarks.arguments import size_wh
from benchmarks.floors import GemmRate, cpu_flags, cpu_name, gemm_floors
from benchmarks.report import summarize
from benchmarks.tier_http import TierServer, pinned_bytes_growth, resent_once, start_tier_servers, taps_once
from benchmarks.tier_report import derive_ratios, evaluate_targets, replace_results_section, write_markdown
from runtime.cpu_precision import AUTO_ORDER, CpuPrecision
from runtime.engine import SamEngine
from runtime.errors import ModelLoadError
from runtime.manifest import load_manifest
from runtime.settings import RuntimeSettings
from synthetic.cone_decoder import make_hold_shaped_model_dir
from synthetic.wall_photo import render_wall, wall_photo

#: Prompts in the batched decoder run and taps resent (+1 new) in the resent scenario: the issue's 20.
PROMPTS = 20


def progress(started: float, step: str) -> None:
    """One line on stderr: seconds since ``started`` and the step about to run."""
    print(f"[{time.perf_counter() - started:6.1f} s] {step}", file=sys.stderr, flush=True)


def _ms(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000.0


def tier_engines(model_dir: Path) -> tuple[dict[CpuPrecision, SamEngine], dict[str, str]]:
    """An engine per tier that opens here (f32 first), and the reason for each that does not."""
    engines: dict[CpuPrecision, SamEngine] = {}
    skipped: dict[str, str] = {}
    for tier in reversed(AUTO_ORDER):
        try:
            engines[tier] = SamEngine.from_model_dir(model_dir, RuntimeSettings(cpu_precision=tier))
        except ModelLoadError as exc:
            skipped[tier] = str(exc)
    return engines, skipped


def one_click_prompts(count: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """``count`` prompts of one click each plus SAM's padding point: coords float32 countx2x2
    (x, y) in the 1024 frame, labels float32 countx2 (1, -1)."""
    clicks = np.stack([40.0 + 45.0 * np.arange(count), 60.0 + 40.0 * np.arange(count)], axis=1)
    coords = np.zeros((count, 2, 2), np.float32)
    coords[:, 0] = clicks
    labels = np.tile(np.asarray([1.0, -1.0], np.float32), (count, 1))
    return coords, labels


def measure_engines(engines: dict[CpuPrecision, SamEngine], repeats: int, prompts: int
                    ) -> dict[str, dict[str, list[float]]]:
    """Milliseconds per tier and repeat: encoder, decoder on 1 and on ``prompts`` prompts."""
    image = render_wall(768, 1024, holds=30, seed=0)[0]
    prepared = {tier: engine.prepare(image) for tier, engine in engines.items()}
    embeddings = {tier: engine.encode(prepared[tier]).value for tier, engine in engines.items()}  # warm-up
    one, many = one_click_prompts(1), one_click_prompts(prompts)
    for tier, engine in engines.items():
        engine.decode(embeddings[tier], *many)  # warm-up at the larger shape
    times: dict[str, dict[str, list[float]]] = {tier: {} for tier in engines}
    for _ in range(repeats):
        for tier, engine in engines.items():
            row = times[tier]
            row.setdefault("encoder_ms", []).append(_ms(lambda: engine.encode(prepared[tier])))  # noqa: B023
            row.setdefault("decoder_1_prompt_ms", []).append(_ms(lambda: engine.decode(embeddings[tier], *one)))  # noqa: B023
            row.setdefault("decoder_n_prompts_ms", []).append(
                _ms(lambda: engine.decode(embeddings[tier], *many)))  # noqa: B023
    return times


def photo_clicks(width: int, height: int, holds: Sequence[Any], count: int) -> list[tuple[float, float]]:
    """``count`` distinct clicks in upright pixels: hold centres, then a 7-column grid if short."""
    clicks = [(round(h.x, 1), round(h.y, 1)) for h in holds][:count]
    rows = -(-count // 7)
    grid = [((i % 7 + 0.5) * width / 7, (i // 7 + 0.5) * height / rows) for i in range(count)]
    return (clicks + [c for c in grid if c not in clicks])[:count]


def measure_http(servers: dict[tuple[str, bool], TierServer], tiers: Sequence[str], repeats: int,
                 size_wh: tuple[int, int], prompts: int) -> tuple[dict[str, dict[str, list[Any]]], dict[str, int]]:
    """Per tier and repeat, on a new photo each repeat: the taps and the resent scenario (``prompts``
    earlier taps + 1 new); then the pinned bytes of one session on the first tier's cached server."""
    samples: dict[str, dict[str, list[Any]]] = {tier: {} for tier in tiers}
    for repeat in range(repeats + 1):  # repeat 0 warms every server's request path, not counted
        photo = wall_photo(*size_wh, seed=200 + repeat)
        clicks = photo_clicks(*photo.upright_size_wh, photo.holds, prompts + 1)
        for tier in tiers:
            measured = {**taps_once(servers[tier, True], photo.jpeg, clicks),
                        **resent_once(servers[tier, True], servers[tier, False], photo.jpeg, clicks)}
            for key, value in measured.items():
                if repeat:
                    samples[tier].setdefault(key, []).append(value)
    photo = wall_photo(*size_wh, seed=999)
    counts = sorted({1, max(2, prompts // 4), prompts})
    pinned = pinned_bytes_growth(servers[tiers[0], True], photo.jpeg,
                                 photo_clicks(*photo.upright_size_wh, photo.holds, prompts), counts)
    return samples, pinned


def measure_hold_taps(model_dir: Path, tiers: Sequence[str], repeats: int, size_wh: tuple[int, int], out: Path
                      ) -> dict[str, dict[str, list[Any]]]:
    """Per tier and repeat, on a new photo each repeat: the first and follow-up taps (``hold_*``)
    against a server per tier on ``model_dir``'s export with hold-shaped masks
    (``synthetic.cone_decoder``: the real decoder runs, its masks are disks around the clicks)."""
    hold_dir = make_hold_shaped_model_dir(model_dir, out / "hold_model")
    servers = start_tier_servers(hold_dir, tiers, out / "logs" / "hold", prompt_caches=(True,))
    samples: dict[str, dict[str, list[Any]]] = {tier: {} for tier in tiers}
    try:
        for repeat in range(repeats + 1):  # repeat 0 warms every server's request path, not counted
            photo = wall_photo(*size_wh, seed=500 + repeat)
            clicks = photo_clicks(*photo.upright_size_wh, photo.holds, 2)
            for tier in tiers:
                for key, value in taps_once(servers[tier, True], photo.jpeg, clicks, prefix="hold_").items():
                    if repeat:
                        samples[tier].setdefault(key, []).append(value)
    finally:
        for server in servers.values():
            server.close()
    return samples


#: Per-repeat values reported by their worst repeat: cache on vs off, how far the answers were apart.
WORST_OF: dict[str, Callable[[list[Any]], Any]] = {
    "resent_mask_iou": min, "resent_mask_pixels_differing": max, "resent_score_max_abs_diff": max,
    "resent_area_max_abs_diff": max, "resent_fields_differing": lambda seen: sorted(set().union(*seen))}


def summarize_tier(values: dict[str, list[Any]]) -> dict[str, Any]:
    """Timings (``*_ms``) as median/min/max; ``WORST_OF`` by the worst repeat; ``resent_identical``
    as all(); prompt counts as the distinct values seen."""
    row: dict[str, Any] = {}
    for key, items in values.items():
        if key.endswith("_ms"):
            stats = summarize([float(v) for v in items])
            row[key] = {name: round(stats[name], 1) for name in ("median", "min", "max")}
        elif key in WORST_OF:
            row[key] = WORST_OF[key](items)
        elif key == "resent_identical":
            row[key] = all(items)
        else:
            row[key] = sorted({int(v) for v in items})
    return row


def floor_key(tier: str, engine: str) -> str:
    """The GEMM floor of a stage run in ``tier`` by ``engine`` (openvino or onnxruntime): sgemm for
    float32 work, OpenVINO's bf16 GEMM, the int8 GEMM of the engine that runs the int8 graph."""
    if tier == "int8":
        return "openvino_int8" if engine == "openvino" else "onnxruntime_u8s8"
    return "openvino_bf16" if tier == "bf16" and engine == "openvino" else "sgemm"


def machine() -> dict[str, Any]:
    """The CPU, its core count, the precision-relevant flags and the load average now."""
    flags = cpu_flags()
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "load_average_1m": round(os.getloadavg()[0], 1),
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16",
                                     "amx_int8", "amx_tile"})}


def engine_part(model_dir: Path, repeats: int, prompts: int) -> tuple[list[str], dict[str, Any], dict[str, str]]:
    """The in-process measurements: tiers run, per tier engines and timing lists, tiers skipped."""
    engines, skipped = tier_engines(model_dir)
    times = measure_engines(engines, repeats, prompts)
    rows: dict[str, Any] = {tier: {"engines": {"encoder": engine.backends["encoder"], "decoder": engine.backends["decoder"]},
                   **times[tier]} for tier, engine in engines.items()}
    tiers: list[str] = list(engines)
    del engines
    gc.collect()
    return tiers, rows, skipped


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every part of the module docstring, in one run; the report as a JSON-able dict."""
    manifest = load_manifest(args.model_dir)
    report: dict[str, Any] = {"command": shlex.join(["python", "benchmarks/bench_cpu_tiers.py", *args.argv]),
                              "machine": machine(), "repeats": args.repeats,
                              "model": {"type": manifest.model_type, "weights": manifest.weights.get("origin", "unknown"),
                                        "parity": manifest.parity.get("cpu_tiers", {})},
                              "photo_size_wh": list(args.photo_size), "prompts": args.prompts,
                              "gemm_size": args.gemm_size}
    started = time.perf_counter()
    progress(started, "GEMM floors")
    floors = gemm_floors(args.gemm_size, args.repeats, threads=os.cpu_count() or 1)
    progress(started, "engines in process")
    tiers, rows, report["skipped"] = engine_part(args.model_dir, args.repeats, args.prompts)
    progress(started, f"starting {2 * len(tiers)} servers")
    servers = start_tier_servers(args.model_dir, tiers, args.out / "logs")
    try:
        progress(started, "HTTP scenarios")
        http, report["pinned_bytes_by_prompts"] = measure_http(servers, tiers, args.repeats, args.photo_size,
                                                               args.prompts)
    finally:
        for server in servers.values():
            server.close()
    progress(started, f"HTTP taps with hold-shaped masks, {len(tiers)} servers")
    hold = measure_hold_taps(args.model_dir, tiers, args.repeats, args.photo_size, args.out)
    progress(started, "GEMM floors again")
    floors_after = gemm_floors(args.gemm_size, args.repeats, threads=os.cpu_count() or 1)
    report["floors"] = {name: {**rate.to_json(), "gflops_after": floors_after[name].gflops}
                        for name, rate in floors.items()}
    report["tiers"] = {tier: {**summarize_tier({**{k: v for k, v in rows[tier].items() if k != "engines"},
                                                **http[tier], **hold[tier]}), "engines": rows[tier]["engines"]}
                       for tier in tiers}
    report["machine"]["load_average_1m_end"] = round(os.getloadavg()[0], 1)
    report["ratios"] = derive_ratios(report, _floor_rates(floors), floor_key)
    report["targets"] = evaluate_targets(report)
    return report


def _floor_rates(floors: dict[str, GemmRate]) -> dict[str, float]:
    return {name: rate.gflops for name, rate in floors.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an export made with --int8 (any model type); required to measure")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 3; --quick 1)")
    parser.add_argument("--photo-size", type=size_wh, default=None, help="upright WIDTHxHEIGHT (default 3024x4032)")
    parser.add_argument("--gemm-size", type=int, default=None, help="M of the MxM GEMM floors (default 2048)")
    parser.add_argument("--prompts", type=int, default=None,
                        help=f"prompts of the batched decoder run and earlier taps resent (default {PROMPTS}; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 320x240 photos, 3 prompts, 256 GEMMs: the smoke run")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "cpu_tiers")
    parser.add_argument("--results-md", type=Path, help="also replace this file's CPU-tier section with the tables")
    parser.add_argument("--note", default="", help="a line for the report (e.g. how loaded the machine was)")
    parser.add_argument("--render", type=Path, help="write the Markdown of this cpu_tiers.json again; measure nothing")
    args = parser.parse_args(argv)
    if args.model_dir is None and args.render is None:
        parser.error("--model-dir is required (or --render a cpu_tiers.json)")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.repeats = max(1, args.repeats or (1 if args.quick else 3))
    args.photo_size = args.photo_size or ((320, 240) if args.quick else (3024, 4032))
    args.gemm_size = args.gemm_size or (256 if args.quick else 2048)
    args.prompts = max(2, args.prompts or (3 if args.quick else PROMPTS))
    args.out.mkdir(parents=True, exist_ok=True)
    report = json.loads(args.render.read_text()) if args.render else run(args)
    report["note"] = args.note or report.get("note", "")
    (args.out / "cpu_tiers.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    markdown = write_markdown(report)
    (args.out / "CPU_TIERS.md").write_text(markdown, encoding="utf-8")
    if args.results_md:
        replace_results_section(args.results_md, markdown, report["model"]["type"])
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
