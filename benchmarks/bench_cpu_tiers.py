"""The CPU precision tiers side by side in one run: encoder and 1-prompt decoder per tier.

    python benchmarks/bench_cpu_tiers.py --model-dir models/vit_t [--repeats 5] [--out tiers.json]

Opens the serving engine once per tier this CPU and export can run (``SAM_CPU_PRECISION``
f32, bf16, int8; ``SAM_CPU_ENGINE=auto``: encoder on OpenVINO, decoder on ONNX Runtime) and
times, interleaved per repeat so load affects every tier alike, the encoder on one prepared
synthetic wall (float32 1x3x1024x1024 -> 1x256x64x64) and the decoder on one click. Prints
and writes the medians and each as a ratio to f32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np

from runtime.cpu_precision import AUTO_ORDER, CpuPrecision
from runtime.engine import SamEngine
from runtime.errors import ModelLoadError
from runtime.settings import RuntimeSettings
from synthetic.wall_photo import render_wall


def _ms(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000.0


def tier_engines(model_dir: Path) -> tuple[dict[CpuPrecision, SamEngine], dict[str, str]]:
    """An engine per tier that opens here, and the reason for each that does not."""
    engines: dict[CpuPrecision, SamEngine] = {}
    skipped: dict[str, str] = {}
    for tier in reversed(AUTO_ORDER):
        try:
            engines[tier] = SamEngine.from_model_dir(model_dir, RuntimeSettings(cpu_precision=tier))
        except ModelLoadError as exc:
            skipped[tier] = str(exc)
    return engines, skipped


def measure(model_dir: Path, repeats: int) -> dict[str, Any]:
    """Median encoder and 1-prompt decoder milliseconds per tier, and their ratios to f32."""
    engines, skipped = tier_engines(model_dir)
    image = render_wall(768, 1024, holds=30, seed=0)[0]
    coords = np.asarray([[[300.0, 400.0], [0.0, 0.0]]], np.float32)
    labels = np.asarray([[1.0, -1.0]], np.float32)
    prepared = {tier: engine.prepare(image) for tier, engine in engines.items()}
    embeddings = {tier: engine.encode(prepared[tier]).value for tier, engine in engines.items()}  # warm-up
    times: dict[str, dict[str, list[float]]] = {tier: {"encoder_ms": [], "decoder_1_prompt_ms": []} for tier in engines}
    for _ in range(repeats):
        for tier, engine in engines.items():
            times[tier]["encoder_ms"].append(_ms(partial(engine.encode, prepared[tier])))
            times[tier]["decoder_1_prompt_ms"].append(_ms(partial(engine.decode, embeddings[tier], coords, labels)))
    medians = {tier: {key: round(statistics.median(values), 1) for key, values in row.items()} for tier, row in times.items()}
    for row in medians.values():
        for key in list(row):
            row[key.replace("_ms", "_vs_f32")] = round(row[key] / medians["f32"][key], 3)
    return {"model_dir": str(model_dir), "repeats": repeats, "tiers": medians, "skipped": skipped}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the report here (JSON)")
    args = parser.parse_args(argv)
    report = measure(args.model_dir, max(1, args.repeats))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
