"""The CPU-tier benchmark's arithmetic and files: ratios to f32 and to floors, targets, the RESULTS.md section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_cpu_tiers import floor_key, photo_clicks
from benchmarks.floors import mlas_u8s8_kernel
from benchmarks.report import write_markdown as write_latency_markdown
from benchmarks.tier_report import (
    SECTION_END,
    SECTION_START,
    derive_ratios,
    evaluate_targets,
    kept_section,
    model_markers,
    replace_results_section,
)

REPO = Path(__file__).resolve().parents[2]
ENGINES = {"encoder": "openvino", "decoder": "onnxruntime"}


def _stats(median: float) -> dict[str, float]:
    return {"median": median, "min": median, "max": median}


def _tier(encoder: float, decoder_1: float, decoder_n: float, first: float, follow: float,
          resent_on: float, resent_off: float, identical: bool = True) -> dict[str, Any]:
    return {"engines": ENGINES, "encoder_ms": _stats(encoder), "decoder_1_prompt_ms": _stats(decoder_1),
            "decoder_n_prompts_ms": _stats(decoder_n), "first_tap_ms": _stats(first),
            "first_tap_decoder_ms": _stats(decoder_1), "follow_up_tap_ms": _stats(follow),
            "resent_on_decoder_ms": _stats(resent_on), "resent_off_decoder_ms": _stats(resent_off),
            "resent_identical": identical}


def _report(identical: bool = True) -> dict[str, Any]:
    return {"model": {"type": "vit_b", "parity": {"f32": {"mask_iou_mean": 1.0, "mask_iou_worst": 1.0}}},
            "prompts": 20,
            "tiers": {"f32": _tier(9700.0, 100.0, 2000.0, 800.0, 80.0, 100.0, 2000.0),
                      "int8": _tier(3880.0, 40.0, 1000.0, 500.0, 50.0, 90.0, 1000.0, identical)}}


RATES = {"sgemm": 100.0, "openvino_bf16": 200.0, "openvino_int8": 400.0, "onnxruntime_u8s8": 364.0}


def test_ratios_are_to_f32_and_to_the_tiers_own_gemm_floor() -> None:
    report = _report()
    ratios = derive_ratios(report, RATES, floor_key)
    # vit_b encoder 0.97 TFLOP: 9,700 ms at 100 GFLOP/s (sgemm), 2,425 ms at 400 (OpenVINO int8).
    assert ratios["f32"]["encoder_vs_floor"] == 1.0 and ratios["int8"]["encoder_vs_floor"] == 1.6
    assert ratios["int8"]["encoder_vs_f32"] == 0.4 and ratios["f32"]["encoder_vs_f32"] == 1.0
    # decoder 3.64 GFLOP a prompt: 36.4 ms at sgemm; int8 runs on ONNX Runtime's u8s8 (364): 10 ms, 200 ms for 20.
    assert ratios["f32"]["decoder_1_vs_floor"] == pytest.approx(100 / 36.4, abs=0.01)
    assert ratios["int8"]["decoder_1_vs_floor"] == 4.0 and ratios["int8"]["decoder_n_vs_floor"] == 5.0
    assert ratios["int8"]["decoder_n_vs_1"] == 25.0 and ratios["int8"]["decoder_n_vs_f32"] == 0.5
    assert ratios["int8"]["resent_decoder_vs_first_tap_decoder"] == 2.25
    assert ratios["int8"]["resent_decoder_on_vs_off"] == 0.09
    assert ratios["int8"]["first_tap_vs_f32"] == 0.625 and ratios["int8"]["follow_up_tap_vs_f32"] == 0.625


def test_each_stage_is_held_to_the_gemm_its_engine_and_tier_run() -> None:
    assert floor_key("f32", "openvino") == "sgemm" and floor_key("f32", "onnxruntime") == "sgemm"
    assert floor_key("bf16", "openvino") == "openvino_bf16" and floor_key("bf16", "onnxruntime") == "sgemm"
    assert floor_key("int8", "openvino") == "openvino_int8" and floor_key("int8", "onnxruntime") == "onnxruntime_u8s8"


@pytest.mark.parametrize("identical", [True, False])
def test_targets_take_the_best_tier_and_need_identical_resent_answers(identical: bool) -> None:
    report = _report(identical)
    report["ratios"] = derive_ratios(report, RATES, floor_key)
    rows = {row["target"].split(" ")[0] + row["target"].split(" ")[1]: row for row in evaluate_targets(report)}
    assert rows["vit_bencoder"]["tier"] == "int8" and rows["vit_bencoder"]["limit"] == 0.45
    assert rows["vit_bencoder"]["met"] is True  # 0.4
    assert rows["decoder,1"]["measured"] == 0.4 and rows["decoder,1"]["met"] is True
    assert rows["firsttap"]["measured"] == 500.0 and rows["firsttap"]["met"] is True
    assert rows["follow-uptap"]["measured"] == 50.0 and rows["follow-uptap"]["met"] is True
    assert rows["20taps"]["tier"] == "int8" and rows["20taps"]["measured"] == 2.25 and rows["20taps"]["met"] is False
    assert rows["f32tier"]["met"] is True
    report["tiers"]["int8"]["resent_on_decoder_ms"] = _stats(40.0)
    report["ratios"] = derive_ratios(report, RATES, floor_key)
    resent = next(row for row in evaluate_targets(report) if row["target"].startswith("20 taps"))
    assert resent["measured"] == 1.0 and resent["met"] is identical


def test_mlas_kernel_follows_the_cpu_flags_as_its_dispatch_does() -> None:
    avx512 = {"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl"}
    assert mlas_u8s8_kernel(avx512 | {"avx512_vnni"}) == "MLAS Avx512Vnni (vpdpbusds)"
    assert mlas_u8s8_kernel(avx512) == "MLAS Avx512Core (no VNNI)"
    assert mlas_u8s8_kernel(avx512 | {"avx512_vnni", "amx_tile", "amx_int8"}) == "MLAS AMX (amx_int8)"
    assert mlas_u8s8_kernel({"avx2", "avx_vnni"}) == "MLAS AvxVnni"
    assert mlas_u8s8_kernel({"avx2"}) == "MLAS Avx2 (no VNNI)"


def test_photo_clicks_are_distinct_hold_centres_then_a_grid() -> None:
    class Hold:
        def __init__(self, x: float, y: float) -> None:
            self.x, self.y = x, y

    clicks = photo_clicks(700, 300, [Hold(1.0, 2.0), Hold(3.0, 4.0)], 21)
    assert clicks[:2] == [(1.0, 2.0), (3.0, 4.0)] and len(clicks) == 21 == len(set(clicks))
    assert all(0 < x < 700 and 0 < y < 300 for x, y in clicks)


def test_the_results_section_is_replaced_in_place_per_model_and_survives_the_latency_report(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Latency benchmark\n\nbefore\n\n{SECTION_START}\nunmarked, from before the model markers\n{SECTION_END}\n")
    replace_results_section(path, "## CPU tiers of vit_t\n\nfirst run\n", "vit_t")
    replace_results_section(path, "## CPU tiers of vit_b\n\nvit_b run\n", "vit_b")
    replace_results_section(path, "## CPU tiers of vit_t\n\nsecond run\n", "vit_t")
    text = path.read_text()
    assert text.count(SECTION_START) == 1 and text.count(SECTION_END) == 1
    assert "second run" in text and "first run" not in text and "unmarked" not in text
    assert text.startswith("# Latency benchmark\n\nbefore\n") and text.index("second run") < text.index("vit_b run")
    latency = json.loads((REPO / "benchmarks" / "results.json").read_text())
    write_latency_markdown(latency, path)  # what bench_latency.py does: the rest is rewritten, the section kept
    rewritten = path.read_text()
    assert "before" not in rewritten and "| target | limit | measured | met |" in rewritten
    (t_start, t_end), (b_start, b_end) = model_markers("vit_t"), model_markers("vit_b")
    assert kept_section(path) == (f"{SECTION_START}\n{t_start}\n## CPU tiers of vit_t\n\nsecond run\n{t_end}\n"
                                  f"{b_start}\n## CPU tiers of vit_b\n\nvit_b run\n{b_end}\n{SECTION_END}")
