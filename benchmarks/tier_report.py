"""The CPU-tier benchmark's ratios, targets and Markdown (``benchmarks/bench_cpu_tiers.py``).

Ratios are of medians measured in the same run: each tier to f32, each model stage to its GEMM
floor (the stage's FLOPs at the rate of the GEMM that tier runs on, ``benchmarks.floors``), the
resent tap's decoder to the first tap's. ``replace_results_section`` keeps the tables in a
marked section of benchmarks/RESULTS.md, which ``benchmarks.report`` carries over when
bench_latency.py rewrites that file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.floors import DECODER_GFLOP_PER_PROMPT, ENCODER_TFLOP, package_version
from synthetic.cone_decoder import REAL_LOGITS_WEIGHT

SECTION_START = "<!-- cpu-tiers: written by benchmarks/bench_cpu_tiers.py --results-md; kept by bench_latency.py -->"
SECTION_END = "<!-- /cpu-tiers -->"
#: (report stage, ratio name prefix, GFLOP of the stage per prompt given the model type, engine role)
STAGES: tuple[tuple[str, str, Callable[[str], float], str], ...] = (
    ("encoder_ms", "encoder", lambda model: ENCODER_TFLOP[model] * 1000.0, "encoder"),
    ("decoder_1_prompt_ms", "decoder_1", lambda model: DECODER_GFLOP_PER_PROMPT, "decoder"),
    ("decoder_n_prompts_ms", "decoder_n", lambda model: DECODER_GFLOP_PER_PROMPT, "decoder"),
)
#: (report stage, ratio name prefix) of the ``<prefix>_vs_f32`` ratios
VS_F32 = (("encoder_ms", "encoder"), ("decoder_1_prompt_ms", "decoder_1"), ("decoder_n_prompts_ms", "decoder_n"),
          ("first_tap_ms", "first_tap"), ("follow_up_tap_ms", "follow_up_tap"),
          ("hold_first_tap_ms", "hold_first_tap"), ("hold_follow_up_tap_ms", "hold_follow_up_tap"))
#: (report key prefix, what its masks are): the taps measured on noise masks and on hold-shaped ones
TAP_MASKS = (("hold_", "hold-shaped masks"), ("", "random weights' noise masks, the worst case"))
AMX_NOTE = (
    "**AMX (ml.c7i, Sapphire Rapids): unmeasured here.** These CPUs add AMX tiles (AMX-BF16, AMX-INT8) to "
    "AVX512-BF16/VNNI. OpenVINO's CPU plugin then compiles bf16 and int8 matmuls to its AMX brgemm kernels "
    "(the `kernel that ran` column would name them), and MLAS dispatches ONNX Runtime's u8s8 GEMM to AMX "
    "(`platform.cpp`: AMX-TILE + AMX-INT8), so the bf16 and int8 floors should rise several-fold further "
    "above the f32 sgemm floor than the AVX-512 rates of the floors table do here. The GEMMs' share of the "
    "encoder shrinks with it: softmax, layer norms, GELU, reorders and memory traffic, which AMX does not "
    "speed up, then bound the bf16/int8 tiers, so their ratio to f32 should fall below this machine's but "
    "by less than the floors' ratio. The decoder runs on OpenVINO in the bf16 and int8 tiers, whose matmuls "
    "would use the same AMX kernels, and on ONNX Runtime in f32, which AMX does not change. A c7i vCPU is one "
    "hyper-thread: 2 vCPUs share one core's AMX unit. Run this script there to measure it.")
HOLD_NOTE = (
    "Random weights make every mask noise (hundreds of thousands of pixels, scattered), the worst case of "
    "mask post-processing (every bilinear tile upsampled) and of PNG encoding; a trained checkpoint's mask of "
    "a hold is a compact blob. These servers run the same export with each decoder's low-res logits replaced "
    f"by a cone around the click (its real logits still computed, added times {REAL_LOGITS_WEIGHT:g}), so the taps cost what "
    "a trained model's cost: the issue's tap targets are for these.")
NOT_IDENTICAL_NOTE = (
    "Answers not identical: the cache-on server decoded the earlier taps in other runs (the first tap alone, "
    "the rest in slices of `SAM_CPU_DECODER_PROMPTS_PER_RUN`) than the cache-off server's one request of N + 1; "
    "ONNX Runtime's decoder output for a prompt differs in its last bits with the prompts that share its run, "
    "which moves pixels lying on the mask threshold (the pixel and area columns). Decoding without the cache "
    "has the same dependence: a click's answer depends in those bits on the other clicks of its request.")
#: The issue's encoder target per model type (best tier / f32); other types use vit_t's.
ENCODER_LIMIT = {"vit_b": 0.45}


def _median(report: dict[str, Any], tier: str, key: str) -> float:
    return float(report["tiers"][tier][key]["median"])


def derive_ratios(report: dict[str, Any], rates_gflops: dict[str, float],
                  floor_key: Callable[[str, str], str]) -> dict[str, dict[str, float]]:
    """Per tier: ``<stage>_vs_f32``, ``<stage>_vs_floor`` (the floor ``floor_key(tier, engine)``
    names), the decoder's N-to-1 ratio (N: ``report["prompts"]``) and the resent tap's decoder to the first tap's and to
    the cache-off server's."""
    model = report["model"]["type"]
    ratios: dict[str, dict[str, float]] = {}
    for tier, row in report["tiers"].items():
        out: dict[str, float] = {}
        for key, name in VS_F32:
            if key not in row:  # a report from before the stage was measured (--render)
                continue
            out[f"{name}_vs_f32"] = round(_median(report, tier, key) / _median(report, "f32", key), 3)
        for key, name, gflop, role in STAGES:
            floor_ms = gflop(model) * (report["prompts"] if name == "decoder_n" else 1) / rates_gflops[floor_key(tier, row["engines"][role])] * 1000.0
            out[f"{name}_vs_floor"] = round(_median(report, tier, key) / floor_ms, 2)
        out["decoder_n_vs_1"] = round(_median(report, tier, "decoder_n_prompts_ms")
                                       / _median(report, tier, "decoder_1_prompt_ms"), 2)
        out["resent_decoder_vs_first_tap_decoder"] = round(_median(report, tier, "resent_on_decoder_ms")
                                                           / _median(report, tier, "first_tap_decoder_ms"), 2)
        out["resent_decoder_on_vs_off"] = round(_median(report, tier, "resent_on_decoder_ms")
                                                / _median(report, tier, "resent_off_decoder_ms"), 3)
        ratios[tier] = out
    return ratios


def _best(report: dict[str, Any], values: dict[str, float]) -> tuple[str, float]:
    tier = min(values, key=lambda t: values[t])
    return tier, values[tier]


def evaluate_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its limit, the measured value, the tier it came from and met."""
    ratios, tiers, model = report["ratios"], report["tiers"], report["model"]["type"]
    rows: list[dict[str, Any]] = []

    def add(target: str, limit: float, tier: str, measured: float, met: bool) -> None:
        rows.append({"target": target, "limit": limit, "tier": tier, "measured": measured, "met": met})

    limit = ENCODER_LIMIT.get(model, 0.5)
    tier, value = _best(report, {t: r["encoder_vs_f32"] for t, r in ratios.items()})
    add(f"{model} encoder in the best tier <= {limit}x f32", limit, tier, value, value <= limit)
    tier, value = _best(report, {t: r["decoder_1_vs_f32"] for t, r in ratios.items()})
    add("decoder, 1 prompt, in the best tier <= 0.5x f32", 0.5, tier, value, value <= 0.5)
    for prefix, masks in TAP_MASKS:
        if all(f"{prefix}first_tap_ms" in r for r in tiers.values()):
            tier, value = _best(report, {t: r[f"{prefix}first_tap_ms"]["median"] for t, r in tiers.items()})
            add(f"first tap (new photo, 1 click, compact outputs, HTTP), {masks}, <= 600 ms (set for vit_t)",
                600.0, tier, value, value <= 600)
            tier, value = _best(report, {t: r[f"{prefix}follow_up_tap_ms"]["median"] for t, r in tiers.items()})
            add(f"follow-up tap (image_id, 1 click, compact outputs, HTTP), {masks}, <= 60 ms (set for vit_t)",
                60.0, tier, value, value <= 60)
    worst = max(ratios, key=lambda t: ratios[t]["resent_decoder_vs_first_tap_decoder"])
    value = ratios[worst]["resent_decoder_vs_first_tap_decoder"]
    identical = all(r["resent_identical"] for r in tiers.values())
    add(f"{report['prompts']} taps resent + 1 new: decoder <= 2x the first tap's (worst tier), answer identical to cache off",
        2.0, worst, value, value <= 2.0 and identical)
    f32 = report["model"]["parity"].get("f32", {})
    value = float(f32.get("mask_iou_worst", 0.0))
    add("f32 tier unchanged: worst per-click IoU recorded by the export >= 0.9999 (1.0 today)", 0.9999, "f32", value,
        value >= 0.9999)
    return rows


def _cell(stats: dict[str, float]) -> str:
    return f"{_ms(stats['median'])} [{_ms(stats['min'])}-{_ms(stats['max'])}]"


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _header(report: dict[str, Any]) -> list[str]:
    machine, model = report["machine"], report["model"]
    versions = ", ".join(f"{name} {package_version(name)}" for name in ("onnxruntime", "openvino", "numpy"))
    return [
        f"## CPU precision tiers of {model['type']}, side by side in one run", "",
        f"Command: `{report['command']}`  ",
        (f"Machine: {machine['cpu']} ({machine['cores']} cores), flags {', '.join(machine['flags'])}; "
         f"load average {machine['load_average_1m']} at the start, {machine['load_average_1m_end']} at the end  "),
        (f"Model: {model['type']} ({model['weights']} weights); photos {report['photo_size_wh'][0]}x"
         f"{report['photo_size_wh'][1]} JPEG, a new one each repeat; {report['repeats']} interleaved repeats; "
         f"median [min-max] in ms  "),
        f"Versions: {versions}; skipped tiers: "
        + ("; ".join(f"{k} ({v})" for k, v in report["skipped"].items()) or "none"),
        *([f"Note: {report['note']}"] if report.get("note") else []),
    ]


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A Markdown table under a ``###`` title: the first column left-aligned, the rest right-aligned."""
    return ["", f"### {title}", "", "| " + " | ".join(columns) + " |",
            "| --- |" + " ---: |" * (len(columns) - 1), *("| " + " | ".join(row) + " |" for row in rows)]


def _floor_lines(report: dict[str, Any]) -> list[str]:
    size = report["gemm_size"]
    rows = [[name, rate["precision"], f"{rate['gflops']:.3g}", f"{rate['gflops_after']:.3g}", rate["kernel"]]
            for name, rate in report["floors"].items()]
    return _table(f"GEMM floors ({size}x{size} @ {size}x{size}, best of the repeats, at the start and at the end of the run)",
                  ["floor", "precision", "GFLOP/s start", "GFLOP/s end", "kernel that ran"], rows)


def _tier_row(tier: str, row: dict[str, Any], r: dict[str, float]) -> list[str]:
    cells = [tier, f"{row['engines']['encoder']} + {row['engines']['decoder']}"]
    for stage, name in (("encoder_ms", "encoder"), ("decoder_1_prompt_ms", "decoder_1"), ("decoder_n_prompts_ms", "decoder_n")):
        cells += [_cell(row[stage]), f"{r[name + '_vs_f32']:.2f}", f"{r[name + '_vs_floor']:.2f}"]
    for stage, name in (("first_tap_ms", "first_tap"), ("follow_up_tap_ms", "follow_up_tap")):
        cells += [_cell(row[stage]), f"{r[name + '_vs_f32']:.2f}"]
    return cells


def _tier_lines(report: dict[str, Any]) -> list[str]:
    columns = ["tier", "engines", "encoder", "x f32", "x floor", "decoder 1 prompt", "x f32", "x floor",
               f"decoder {report['prompts']} prompts", "x f32", "x floor", "first tap (HTTP, noise masks)", "x f32",
               "follow-up tap (HTTP, noise masks)", "x f32"]
    rows = [_tier_row(tier, row, report["ratios"][tier]) for tier, row in report["tiers"].items()]
    return _table("Tiers (x f32 / x the tier's GEMM floor)", columns, rows)


def _hold_tap_lines(report: dict[str, Any]) -> list[str]:
    """The taps on hold-shaped masks, beside the same taps on noise masks (absent from older reports)."""
    if not all("hold_first_tap_ms" in row for row in report["tiers"].values()):
        return []
    columns = ["tier", "first tap", "x f32", "its decoder", "follow-up tap", "x f32", "its decoder",
               "follow-up mask area (px)", "follow-up tap, noise masks"]
    rows = [[tier, _cell(row["hold_first_tap_ms"]), f"{report['ratios'][tier]['hold_first_tap_vs_f32']:.2f}",
             _cell(row["hold_first_tap_decoder_ms"]), _cell(row["hold_follow_up_tap_ms"]),
             f"{report['ratios'][tier]['hold_follow_up_tap_vs_f32']:.2f}", _cell(row["hold_follow_up_decoder_ms"]),
             _counts(row["hold_follow_up_mask_area_px"]), _cell(row["follow_up_tap_ms"])]
            for tier, row in report["tiers"].items()]
    return [*_table("Taps with hold-shaped masks (HTTP; the export's decoders run, their masks replaced by a "
                    "disk around the click: synthetic/cone_decoder.py)", columns, rows), "", HOLD_NOTE]


def _counts(values: Sequence[int]) -> str:
    return "/".join(map(str, values))


def _resent_lines(report: dict[str, Any]) -> list[str]:
    columns = ["tier", "on: decoder", "on: decoded / reused", "on: round trip", "off: decoder", "off: decoded",
               "off: round trip", "decoder on / off", "on decoder / first tap's", "answers identical",
               "mask IoU on vs off (worst)", "mask pixels differing (most)", "score difference (most)",
               "click area difference (most)", "fields differing"]
    rows = [[tier, _cell(row["resent_on_decoder_ms"]),
             f"{_counts(row['resent_on_prompts_decoded'])} / {_counts(row['resent_on_prompts_reused'])}",
             _cell(row["resent_on_ms"]), _cell(row["resent_off_decoder_ms"]), _counts(row["resent_off_prompts_decoded"]),
             _cell(row["resent_off_ms"]), f"{report['ratios'][tier]['resent_decoder_on_vs_off']:.3f}",
             f"{report['ratios'][tier]['resent_decoder_vs_first_tap_decoder']:.2f}",
             "yes" if row["resent_identical"] else "**no**", f"{row['resent_mask_iou']:.6f}",
             f"{row['resent_mask_pixels_differing']:,.0f}", f"{row['resent_score_max_abs_diff']:.2g}",
             f"{row.get('resent_area_max_abs_diff', float('nan')):,.0f}",
             ", ".join(row.get("resent_fields_differing", ["(not recorded)"])) or "none"]
            for tier, row in report["tiers"].items()]
    lines = _table(f"{report['prompts']} earlier taps resent + 1 new (HTTP, by image_id), prompt cache on vs off",
                   columns, rows)
    if not all(row["resent_identical"] for row in report["tiers"].values()):
        lines += ["", NOT_IDENTICAL_NOTE]
    return lines


def _pinned_lines(report: dict[str, Any]) -> list[str]:
    pinned = report["pinned_bytes_by_prompts"]
    counts = sorted(pinned, key=int)
    per_prompt = (pinned[counts[-1]] - pinned[counts[0]]) / max(1, int(counts[-1]) - int(counts[0]))
    title = (f"A session's pinned bytes by prompts decoded on its image (/stats cache.pinned_bytes, "
             f"{next(iter(report['tiers']))} server): {per_prompt:,.0f} bytes more per prompt")
    return _table(title, ["prompts decoded", "pinned bytes"], [[count, f"{pinned[count]:,}"] for count in counts])


def _target_lines(report: dict[str, Any]) -> list[str]:
    rows = [[row["target"], f"{row['limit']:g}", f"{row['measured']:.3g}", row["tier"], "yes" if row["met"] else "**no**"]
            for row in report["targets"]]
    parity = "; ".join(f"{tier} mean {p.get('mask_iou_mean', float('nan')):.4f}, worst "
                       f"{p.get('mask_iou_worst', float('nan')):.4f}" for tier, p in report["model"]["parity"].items())
    return [*_table("Targets (issue 26)", ["target", "limit", "measured", "tier", "met"], rows), "",
            f"Parity recorded by the export (per-click mask IoU vs PyTorch's SamPredictor): {parity}", "", AMX_NOTE, ""]


def write_markdown(report: dict[str, Any]) -> str:
    """Every table of the report, as one Markdown section (``## ...``)."""
    return "\n".join(_header(report) + _floor_lines(report) + _tier_lines(report) + _hold_tap_lines(report)
                     + _resent_lines(report)
                     + _pinned_lines(report) + _target_lines(report))


def kept_section(path: Path) -> str:
    """The marked CPU-tier section of ``path`` (markers included), or "" when it has none."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = text.find(SECTION_START), text.find(SECTION_END)
    return text[start:end + len(SECTION_END)] if 0 <= start < end else ""


def model_markers(model: str) -> tuple[str, str]:
    """The markers around one model type's tables inside the CPU-tier section."""
    return f"<!-- cpu-tiers model {model} -->", f"<!-- /cpu-tiers model {model} -->"


def model_blocks(section: str) -> dict[str, str]:
    """The marked tables of each model type in a CPU-tier section, markers included, in their order."""
    blocks: dict[str, str] = {}
    for found in re.finditer(r"<!-- cpu-tiers model (\S+) -->", section):
        end = section.find(model_markers(found.group(1))[1], found.end())
        if end >= 0:
            blocks[found.group(1)] = section[found.start():end + len(model_markers(found.group(1))[1])]
    return blocks


def replace_results_section(path: Path, markdown: str, model: str) -> None:
    """Put ``markdown`` (the tables of one ``model`` type) into ``path``'s marked CPU-tier section,
    replacing that model's earlier tables and keeping the other models' (text outside the model
    markers is dropped; the section is appended when there is none yet)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    old = kept_section(path)
    start, end = model_markers(model)
    blocks = {**model_blocks(old), model: f"{start}\n{markdown.rstrip()}\n{end}"}
    section = "\n".join([SECTION_START, *blocks.values(), SECTION_END])
    text = text.replace(old, section) if old else text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")
