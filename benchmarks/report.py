"""Benchmark report: summary statistics, targets, JSON, Markdown table and PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.tier_report import kept_section

#: (ratio name, limit, description) for every model type
TARGETS = (
    ("encoder_vs_pytorch", 0.6, "cold encoder (service default engine) <= 0.6x the PyTorch encoder"),
    ("encoder_vs_floor", 1.3, "cold encoder <= 1.3x the sgemm floor (encoder FLOPs / measured sgemm rate)"),
    ("warm_vs_baseline", 1 / 50, "warm request (cached, 1 click, compact outputs) <= 1/50 of the baseline request"),
    ("decoder_20_vs_1", 2.0, "20 clicks in one request <= 2x the decoder time of 1 click"),
    ("server_overhead_ms", 3.0, "server overhead on a tiny request <= 3 ms p50 (server log latency minus model stages)"),
)


def summarize(values: list[float]) -> dict[str, float]:
    """Median, p95, min, max and count of a list of milliseconds."""
    array = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(array)), "p95": float(np.percentile(array, 95)), "min": float(array.min()),
            "max": float(array.max()), "n": int(array.size)}


def summarize_samples(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Group samples by (provider, scenario): total and per-stage statistics."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        groups.setdefault(f"{sample['provider']}/{sample['scenario']}", []).append(sample)
    summary = {}
    for key, items in groups.items():
        stages = sorted({stage for item in items for stage in item["stages"]})
        summary[key] = {
            "total_ms": summarize([item["total_ms"] for item in items]),
            "stages_ms": {stage: summarize([item["stages"].get(stage, 0.0) for item in items])["median"] for stage in stages},
        }
    return summary


#: Extra targets per model type: MobileSAM's CPU-tier promise (issue 8).
MODEL_TARGETS = {
    "vit_t": (
        ("http_cold_first_click_ms", 1500.0, "first click on a new photo over HTTP (raw JPEG, 1 click, 1-bit mask) <= 1500 ms"),
        ("http_followup_ms", 100.0, "follow-up click over HTTP (image_id, 1 click, compact) <= 100 ms"),
    ),
}


def evaluate_targets(ratios: dict[str, float | None], model_type: str = "") -> list[dict[str, Any]]:
    rows = []
    for name, limit, description in (*TARGETS, *MODEL_TARGETS.get(model_type, ())):
        value = ratios.get(name)
        rows.append({"target": name, "description": description, "limit": limit, "measured": value,
                     "met": None if value is None else bool(value <= limit)})
    return rows


def write_markdown(report: dict[str, Any], path: Path) -> None:
    machine = report["machine"]
    image = report["image"]
    sizes = image.get("sizes") or [f"{image['width']}x{image['height']}"]
    lines = [
        "# Latency benchmark", "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine['cpu']} ({machine['cores']} cores), {machine['platform']}  ",
        (f"Model: {report['model']['type']} ({report['model']['weights']}), photos "
         f"{', '.join(sizes)} JPEG "
         f"(first {report['image']['bytes'] / 1e6:.1f} MB; ratios use the first size), repeats {report['repeats']}  "),
        f"Versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items())}  ",
        (f"sgemm: {report['sgemm_gflops']:.0f} GFLOP/s measured in this run; encoder floor "
        f"{report['encoder_floor_ms']:.0f} ms ({report['encoder_tflop']} TFLOP)  "),
        (f"Providers: {', '.join(report['providers'])}; skipped: "
        f"{'; '.join(f'{k} ({v})' for k, v in report['skipped_providers'].items()) or 'none'}"), "",
        "## Requests (milliseconds)", "",
        "| scenario | median | p95 | stages (median) |", "| --- | ---: | ---: | --- |",
    ]
    for key, item in report["summary"].items():
        stages = ", ".join(f"{k.removesuffix('_ms')} {v:.0f}" for k, v in item["stages_ms"].items() if v >= 0.5)
        lines.append(f"| {key} | {item['total_ms']['median']:.1f} | {item['total_ms']['p95']:.1f} | {stages} |")
    if report.get("engines"):
        lines += ["", "## Engines side by side (medians, milliseconds)", "",
                  f"The service's default is `{report['main_provider']}`; ratios and targets below use it.", "",
                  "| engine | encoder | x sgemm floor | decoder 1 click | decoder 20 clicks | cold request | warm request |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for label, row in report["engines"].items():
            cells = [_ms(row["encoder_ms"]), "n/a" if row["encoder_vs_floor"] is None else f"{row['encoder_vs_floor']:.2f}",
                     _ms(row["decoder_1_ms"]), _ms(row["decoder_20_ms"]), _ms(row["cold_ms"]), _ms(row["warm_ms"])]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if report.get("stages_vs_floor"):
        rows = report["stages_vs_floor"]
        lines += ["", (f"## Stages on the GPU beside the floor (new photo, 5 clicks; ours on {rows[0]['provider']}, "
                       f"baseline {rows[0]['baseline']}; floor measured on an H100)"), "",
                  "| stage | ours | old service | floor |", "| --- | ---: | ---: | ---: |"]
        for row in rows:
            lines.append(f"| {row['stage']} | {_ms(row['ours_ms'])} | {_ms(row['baseline_ms'])} | {_ms(row['floor_ms'])} |")
    lines += ["", "## Ratios and targets", "", "| target | limit | measured | met |", "| --- | ---: | ---: | :---: |"]
    for row in report["targets"]:
        measured = "n/a" if row["measured"] is None else f"{row['measured']:.3g}"
        met = "n/a" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(f"| {row['description']} | {row['limit']:.3g} | {measured} | {met} |")
    lines += ["", "Other ratios: " + ", ".join(f"{k} {v:.3g}" for k, v in report["ratios"].items() if v is not None), ""]
    kept = kept_section(path)  # the CPU-tier tables bench_cpu_tiers.py put there
    path.write_text("\n".join(lines + ([kept, ""] if kept else [])))


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Left: median total per scenario (log scale, p95 whisker). Right: where the time goes (shares)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(report["summary"])
    stage_names = sorted({s for item in report["summary"].values() for s in item["stages_ms"]})
    fig, (totals_axis, share_axis) = plt.subplots(1, 2, figsize=(14, 0.45 * len(keys) + 2), sharey=True,
                                                  gridspec_kw={"width_ratios": [3, 2]})
    medians = np.array([report["summary"][k]["total_ms"]["median"] for k in keys])
    p95s = np.array([report["summary"][k]["total_ms"]["p95"] for k in keys])
    totals_axis.barh(keys, medians, xerr=[np.zeros_like(medians), p95s - medians], color="#4c72b0", capsize=3)
    for y, value in enumerate(medians):
        totals_axis.text(value * 1.1, y, f"{value:,.0f} ms", va="center", fontsize=8)
    totals_axis.set_xscale("log")
    totals_axis.set_xlim(left=1, right=medians.max() * 8)
    totals_axis.set_xlabel("median milliseconds per request (log scale; whisker to p95)")
    totals_axis.invert_yaxis()
    left = np.zeros(len(keys))
    colours = plt.get_cmap("tab10")
    for index, stage in enumerate(stage_names):
        values = np.array([report["summary"][k]["stages_ms"].get(stage, 0.0) for k in keys])
        sums = np.array([max(sum(report["summary"][k]["stages_ms"].values()), 1e-9) for k in keys])
        share = values / sums
        share_axis.barh(keys, share, left=left, label=stage.removesuffix("_ms"), color=colours(index % 10))
        left += share
    share_axis.set_xlim(0, 1)
    share_axis.set_xlabel("share of the request's time by stage")
    share_axis.legend(loc="lower right", fontsize=7)
    fig.suptitle(f"{report['model']['type']} on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
                 f"{report['image']['width']}x{report['image']['height']} photo")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(report: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "RESULTS.md", out_dir / "latency.png"]
    paths[0].write_text(json.dumps(report, indent=2))
    write_markdown(report, paths[1])
    write_chart(report, paths[2])
    return paths
