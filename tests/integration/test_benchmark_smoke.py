"""The benchmark scripts run end to end in --quick mode (no timing assertions: CI is a smoke run).

Slow suite: they load every CPU engine, the PyTorch baseline and a server (about 2.5 minutes
together on 2 cores) for structure-only checks, so ``make test-fast`` leaves them out.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cpu_backends import AUTO_CPU_BACKENDS
from synthetic.cone_decoder import IMAGE_SIZE, TOKEN_RADII_1024
from tests.integration.server import REPO

pytestmark = pytest.mark.slow


def test_quick_benchmark_writes_report_json_markdown_and_chart(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_latency.py"), "--quick", "--repeats", "1",
                             "--image-sizes", "320x240,240x320", "--out", str(tmp_path / "new" / "dir")],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    tmp_path = tmp_path / "new" / "dir"
    report = json.loads((tmp_path / "results.json").read_text())
    scenarios = {key.split("/", 1)[1] for key in report["summary"]}
    for size in ("320x240", "240x320"):
        assert {f"baseline PyTorch, 5 clicks, PNG @{size}", f"ours cold, 5 clicks, PNG @{size}",
                f"ours warm, 20 clicks, compact @{size}", f"HTTP cold raw JPEG, 5 clicks, WebP @{size}",
                f"HTTP warm JSON, 1 click, compact @{size}", f"HTTP cold raw JPEG, 1 click, compact @{size}"} <= scenarios
    assert set(report["engines"]) == {"cpu-onnxruntime", "cpu-openvino", "cpu-auto"} and report["main_provider"] == "cpu-auto"
    assert all(row["encoder_ms"] > 0 and row["encoder_vs_floor"] > 0 for row in report["engines"].values())
    assert report["ratios"]["warm_vs_baseline"] is not None and report["image"]["sizes"] == ["320x240", "240x320"]
    assert report["sgemm_gflops"] > 0 and report["model"]["type"] == "tiny"
    assert {row["target"] for row in report["targets"]} >= {"encoder_vs_pytorch", "warm_vs_baseline"}
    assert "cuda-fp32" in report["skipped_providers"] or "cuda-fp32" in report["providers"]
    assert "| target | limit | measured | met |" in (tmp_path / "RESULTS.md").read_text()
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prepost_benchmark_compares_every_implementation(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_prepost.py"), "--quick", "--repeats", "1",
                             "--model-dir", str(tiny_model_dir), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "prepost.json").read_text())
    assert set(report["summary"]["preprocess"]) >= {"Pillow/numpy", "graph (cpu EP)"}
    assert set(report["summary"]["postprocess, 5 masks"]) >= {"today: direct numpy calls", "numpy renderer (CPU default)",
                                                               "graph (cpu EP)"}
    assert min(report["worst_union_iou_vs_today"].values()) >= 0.999
    assert (tmp_path / "PREPOST.md").read_text().startswith("# Pre- and post-processing")


def test_gpu_targets_script_runs_on_cpu(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_targets.py"), "--providers", "cpu", "--quick",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "targets.json").read_text())
    assert [row["target"] for row in report["targets"]][-1] == "parity_min_iou"
    assert report["targets"][-1]["met"] and len(report["per_click_iou"]) == 5
    assert all(value > 0 for value in report["p50_ms"].values())
    assert "## Placement (ONNX Runtime profiler, SAM_PROVIDERS=cpu)" in result.stdout  # the placement report
    assert report["placement"]["ok"] and set(report["placement"]["graphs"]) == {"preprocess", "encoder", "decoder",
                                                                                 "postprocess", "cutout_resize"}
    cutout = report["placement"]["cutout"]  # the cut-out's resize graph, run as the GPU path runs it
    assert cutout["resized"] and cutout["copied_bytes"] == cutout["expected_copy_bytes"] == 240 * 320 * 3
    assert "Cut-out: cutout_resize.onnx on cpu to 320x240" in result.stdout
    assert report["placement"]["memory"]["renders"] == 8 and report["placement"]["memory"]["masks_per_render"] == 10



def test_shared_cache_benchmark_runs_every_scenario(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_shared_cache.py"), "--model-dir",
                             str(tiny_model_dir), "--repeats", "1", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    (sample,) = json.loads((tmp_path / "shared_cache.json").read_text())["samples"]
    assert set(sample) == {"other_instance_shared_ms", "other_instance_reencode_ms", "local_hit_with_tier_ms",
                           "local_hit_without_tier_ms", "miss_overhead_ms"}
    assert all(value > 0 for value in sample.values())
    assert "other_instance_shared_ms" in (tmp_path / "SHARED_CACHE.md").read_text()


def test_cpu_tier_benchmark_reports_every_tier_scenario_and_floor(tiny_int8_model_dir: Path, tmp_path: Path) -> None:
    from benchmarks.floors import cpu_flags
    from runtime.cpu_precision import openvino_has_bf16
    from runtime.manifest import load_manifest

    results_md = tmp_path / "RESULTS.md"
    results_md.write_text("# Latency benchmark\n\nkept\n")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_cpu_tiers.py"), "--model-dir",
                             str(tiny_int8_model_dir), "--quick", "--out", str(tmp_path), "--results-md", str(results_md)],
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "cpu_tiers.json").read_text())
    tiers = {"f32", "int8", "bf16"} if openvino_has_bf16() else {"f32", "int8"}
    assert set(report["tiers"]) == tiers and set(report["skipped"]) == {"f32", "int8", "bf16"} - tiers
    prompts = report["prompts"]
    for tier, row in report["tiers"].items():
        timings = {key: value for key, value in row.items() if key.endswith("_ms")}
        assert set(timings) == {"encoder_ms", "decoder_1_prompt_ms", "decoder_n_prompts_ms", "first_tap_ms",
                                "first_tap_decoder_ms", "first_tap_encoder_ms", "follow_up_tap_ms", "follow_up_decoder_ms",
                                "resent_on_ms", "resent_on_decoder_ms", "resent_off_ms", "resent_off_decoder_ms",
                                "hold_first_tap_ms", "hold_first_tap_decoder_ms", "hold_first_tap_encoder_ms",
                                "hold_follow_up_tap_ms", "hold_follow_up_decoder_ms"}
        assert all(0 < t["min"] <= t["median"] <= t["max"] for t in timings.values()), tier
        assert row["engines"] == AUTO_CPU_BACKENDS[tier]  # type: ignore[index]
        assert row["resent_on_prompts_decoded"] == [1] and row["resent_on_prompts_reused"] == [prompts]
        assert row["resent_off_prompts_decoded"] == [prompts + 1] and isinstance(row["resent_identical"], bool)
        # Cache on vs off: the same masks and scores up to float rounding (batch composition; see RESULTS.md).
        assert row["resent_mask_iou"] >= 0.99 and row["resent_score_max_abs_diff"] <= 1e-4, tier
        assert all(0 < value < 1e4 for value in report["ratios"][tier].values()), tier
        # Known answer: a hold-shaped follow-up mask is token 0's disk around the click (clipped by no more
        # than half at a photo's edge); random weights' noise would cover a large part of the photo.
        disk_px = math.pi * (TOKEN_RADII_1024[0] * max(report["photo_size_wh"]) / IMAGE_SIZE) ** 2
        assert all(0.45 * disk_px <= area <= 1.1 * disk_px for area in row["hold_follow_up_mask_area_px"]), tier
    assert set(report["ratios"]["f32"]) >= {"encoder_vs_floor", "decoder_1_vs_floor", "decoder_n_vs_floor",
                                            "resent_decoder_on_vs_off", "resent_decoder_vs_first_tap_decoder"}
    assert all(value == 1.0 for key, value in report["ratios"]["f32"].items() if key.endswith("_vs_f32"))
    floors = report["floors"]
    assert set(floors) == {"sgemm", "openvino_f32", "openvino_bf16", "openvino_int8", "onnxruntime_u8s8"}
    assert all(rate["gflops"] > 0 and rate["gflops_after"] > 0 for rate in floors.values())
    assert ("bf16" in floors["openvino_bf16"]["kernel"]) == openvino_has_bf16()
    assert "I8" in floors["openvino_int8"]["kernel"].upper()
    assert ("Vnni" in floors["onnxruntime_u8s8"]["kernel"]) == ("avx512_vnni" in cpu_flags())
    # Known answer: each prompt pins its logits (T x L x L float32), its T scores and its key (shape, coords, labels).
    manifest = load_manifest(tiny_int8_model_dir)
    per_prompt = manifest.num_mask_tokens * (manifest.low_res_size ** 2 * 4 + 4) + 2 * 8 + 2 * 2 * 4 + 2 * 4
    pinned = report["pinned_bytes_by_prompts"]
    counts = sorted(pinned, key=int)
    assert counts[0] == "1" and len(counts) >= 2
    assert pinned[counts[-1]] - pinned[counts[0]] == (int(counts[-1]) - 1) * per_prompt
    assert len(report["targets"]) == 8 and all(isinstance(row["met"], bool) for row in report["targets"])
    markdown = (tmp_path / "CPU_TIERS.md").read_text()
    for heading in ("### GEMM floors", "### Tiers", "### Taps with hold-shaped masks", f"### {prompts} earlier taps resent", "pinned bytes", "### Targets"):
        assert heading in markdown
    kept = results_md.read_text()
    assert kept.startswith("# Latency benchmark\n\nkept\n") and markdown.strip() in kept
