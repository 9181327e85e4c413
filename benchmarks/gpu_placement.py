"""Where every node of the GPU path runs, from ONNX Runtime's profiler, and device memory under load.

    python benchmarks/gpu_placement.py --model-dir models/vit_b --providers cuda --out $OUT/placement
    python benchmarks/gpu_placement.py --model-dir DIR --providers cpu --size 640x480   # the same on CPU

``benchmarks/gpu_targets.py`` runs it too. The service's own engine (``SamEngine.from_model_dir``)
opens every graph with ``SAM_ORT_PROFILE_DIR`` set (on CPU with ``SAM_CPU_PREPOST=graph``, so
the pre/post graphs run as on a GPU), serves one photo with ``masks`` clicks, then
``concurrency`` threads render ``masks`` full-size masks each at once, and the cut-out's pixels
are resized to half the photo's size by ``cutout_resize.onnx`` (the engine's on a GPU; on CPU one
opened the same way on the CPU EP). The report lists, per graph, the nodes ONNX Runtime placed on the CPU EP and every Memcpy node it inserted, and the
device memory in use (the process's resident memory on CPU) before, at its highest sample
during, and after the concurrent renders, and the bytes the cut-out copied to the host (they must
be ``cutout_copy_bytes`` of its output size). On a GPU provider a compute node on the CPU EP (one whose
output is more than ``SHAPE_NODE_MAX_BYTES``: ONNX Runtime keeps small shape arithmetic on the
CPU on purpose) is a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np

from benchmarks.arguments import size_wh
from runtime import gpu_setup
from runtime.cuda_runtime import CudaError, CudaRuntime
from runtime.cutout_resize import OrtCutoutResizer
from runtime.device_memory import cutout_copy_bytes
from runtime.engine import SamEngine
from runtime.image_files import ImageLimits
from runtime.providers import GPU_PROVIDERS
from runtime.sam_preprocessing import to_model_coords
from runtime.settings import RuntimeSettings
from synthetic.wall_photo import wall_photo

#: A CPU-EP node whose output is at most this many bytes is shape arithmetic, not compute.
SHAPE_NODE_MAX_BYTES = 1024
MEMCPY_OPS = ("MemcpyFromHost", "MemcpyToHost")


def placement(profile: list[dict[str, Any]], on_gpu: bool) -> dict[str, Any]:
    """One session's profile events -> nodes on the CPU EP, Memcpy nodes, compute nodes misplaced."""
    nodes: dict[str, dict[str, Any]] = {}
    for event in profile:
        if event.get("cat") == "Node" and "op_name" in event.get("args", {}):
            nodes[event["name"].removesuffix("_kernel_time")] = event["args"]
    on_cpu = {name: args for name, args in nodes.items()
              if args.get("provider") == "CPUExecutionProvider" and args["op_name"] not in MEMCPY_OPS}
    compute = sorted(f"{args['op_name']} {name} ({args.get('output_size', '?')} bytes out)"
                     for name, args in on_cpu.items() if int(args.get("output_size", 0)) > SHAPE_NODE_MAX_BYTES)
    return {"nodes": len(nodes), "cpu_ep_ops": dict(Counter(args["op_name"] for args in on_cpu.values())),
            "memcpy_nodes": sorted(name for name, args in nodes.items() if args["op_name"] in MEMCPY_OPS),
            "compute_on_cpu": compute if on_gpu else []}


def _resident_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


def memory_reader(on_gpu: bool, device_id: int) -> tuple[str, Callable[[], int]]:
    """(what is measured, a function giving the bytes in use now)."""
    if on_gpu:
        cuda = CudaRuntime.load(device_id)
        if cuda is not None:
            try:
                _, total = cuda.memory_bytes()
                return f"device memory in use (of {total} bytes)", lambda: total - cuda.memory_bytes()[0]
            except CudaError:
                pass
    return "process resident memory (host)", _resident_bytes


def concurrent_renders(engine: SamEngine, jpeg: bytes, clicks: list[tuple[float, float]], concurrency: int,
                       device_id: int) -> dict[str, Any]:
    """One photo, ``len(clicks)`` prompts; then ``concurrency`` renders of all of them at once."""
    image = engine.load_image(jpeg, ImageLimits(max_pixels=200_000_000))
    embedding = engine.encode(engine.prepare(image))
    points = np.asarray([[[x, y], [0.0, 0.0]] for x, y in clicks], np.float32)
    coords = to_model_coords(points, embedding.orig_size_hw, engine.manifest.image_size)
    coords[:, 1] = 0.0  # the padding point stays at (0, 0), as SamPredictor adds it
    labels = np.asarray([[1.0, -1.0]] * len(clicks), np.float32)
    decoded = engine.decode(embedding.value, coords, labels)
    tokens = [0] * len(clicks)
    what, in_use = memory_reader(engine.on_gpu, device_id)
    before, peak, done = in_use(), [in_use()], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], in_use())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(concurrency) as pool:
        rendered = list(pool.map(lambda _: engine.render(decoded, tokens, embedding.input_size_hw,
                                                         embedding.orig_size_hw, keep_masks=True), range(concurrency)))
    done.set()
    sampler.join()
    after = in_use()
    same = all(np.array_equal(r.union.dense(), rendered[0].union.dense()) for r in rendered)
    return {"measured": what, "before_bytes": before, "peak_bytes": peak[0], "after_bytes": after,
            "renders": concurrency, "masks_per_render": len(clicks), "size_hw": list(embedding.orig_size_hw),
            "renders_agree": same}


def cutout_copy(resizer: OrtCutoutResizer, engine: SamEngine, jpeg: bytes) -> dict[str, Any]:
    """The photo decoded as a request decodes it, its cut-out resized to half its size: bytes copied."""
    image = engine.load_image(jpeg, ImageLimits(max_pixels=200_000_000))
    out_size_hw = (max(1, image.size_hw[0] // 2), max(1, image.size_hw[1] // 2))
    resized = resizer.resize(image, out_size_hw)
    return {"provider": resizer.provider, "decoded_on_device": image.device is not None,
            "resized": resized is not None, "out_size_hw": list(out_size_hw), "copied_bytes": resizer.copied_bytes,
            "expected_copy_bytes": cutout_copy_bytes(out_size_hw), "photo_copied_whole": image.host is not None,
            "buffer": resizer.staging.allocator.kind}


def run(model_dir: Path, providers: str, size: tuple[int, int], masks: int, concurrency: int,
        out: Path) -> dict[str, Any]:
    """Profile the GPU path's graphs on ``providers`` (SAM_PROVIDERS) and report placement and memory."""
    profiles = out / "ort-profiles"
    environ = {"SAM_PROVIDERS": providers, "SAM_ORT_PROFILE_DIR": str(profiles), "SAM_CPU_PREPOST": "graph",
               "SAM_CPU_ENGINE": "onnxruntime", "SAM_REQUIRE_GPU": "false" if providers == "cpu" else "true"}
    settings = RuntimeSettings.from_env(environ)
    engine = SamEngine.from_model_dir(model_dir, settings)
    photo = wall_photo(size[0], size[1], seed=900)
    memory = concurrent_renders(engine, photo.jpeg, photo.clicks(masks), concurrency, settings.providers.cuda.device_id)
    resizer = engine.cutout or gpu_setup.open_cutout_resizer(model_dir, engine.manifest, (engine.provider,), settings)
    cutout = cutout_copy(resizer, engine, photo.jpeg) if resizer is not None else {"resized": False}
    runners: list[tuple[str, Any]] = [("preprocess", engine.images), ("encoder", engine.encoder),
                                      ("decoder", engine.decoder), ("postprocess", engine.renderer)]
    graphs: dict[str, Any] = {}
    for role, runner in runners + ([("cutout_resize", resizer)] if resizer is not None else []):
        session = getattr(runner, "_session", None)  # the ONNX Runtime session the runner was given
        if session is None:
            graphs[role] = {"engine": runner.backend}
            continue
        events = json.loads(Path(session.end_profiling()).read_text())
        graphs[role] = {"provider": runner.provider, **placement(events, runner.provider in GPU_PROVIDERS)}
    cutout_ok = bool(cutout["resized"]) and cutout["copied_bytes"] == cutout["expected_copy_bytes"]
    return {"providers": providers, "on_gpu": engine.on_gpu, "graphs": graphs, "memory": memory, "cutout": cutout,
            "ok": engine.on_gpu == (providers != "cpu") and not any(g.get("compute_on_cpu") for g in graphs.values())
            and memory["renders_agree"] and cutout_ok}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"## Placement (ONNX Runtime profiler, SAM_PROVIDERS={report['providers']})", "",
             "| graph | provider | nodes | on the CPU EP (op: count) | Memcpy nodes | compute nodes on the CPU |",
             "| --- | --- | ---: | --- | ---: | --- |"]
    for role, graph in report["graphs"].items():
        if "nodes" not in graph:
            lines.append(f"| {role} | {graph['engine']} (not ONNX Runtime) | | | | |")
            continue
        cpu = ", ".join(f"{op}: {n}" for op, n in sorted(graph["cpu_ep_ops"].items())) or "none"
        lines.append(f"| {role} | {graph['provider']} | {graph['nodes']} | {cpu} | {len(graph['memcpy_nodes'])} | "
                     f"{'; '.join(graph['compute_on_cpu']) or 'none'} |")
    m = report["memory"]
    lines += ["", (f"{m['renders']} concurrent renders of {m['masks_per_render']} masks at {m['size_hw'][1]}x"
                   f"{m['size_hw'][0]}: {m['measured']} {m['before_bytes'] / 2**20:.0f} MiB before, "
                   f"{m['peak_bytes'] / 2**20:.0f} MiB at the highest sample, {m['after_bytes'] / 2**20:.0f} MiB "
                   f"after; renders agree: {m['renders_agree']}"), "", _cutout_line(report["cutout"]), ""]
    return "\n".join(lines)


def _cutout_line(cutout: dict[str, Any]) -> str:
    if not cutout["resized"]:
        return "Cut-out: not resized by cutout_resize.onnx (no such graph, or the photo was not on the device)"
    height, width = cutout["out_size_hw"]
    return (f"Cut-out: cutout_resize.onnx on {cutout['provider']} to {width}x{height}, photo decoded on the device: "
            f"{cutout['decoded_on_device']}, {cutout['copied_bytes']} bytes copied into {cutout['buffer']} host memory "
            f"(expected {cutout['expected_copy_bytes']}), whole photo copied: {cutout['photo_copied_whole']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--providers", default="cuda")
    parser.add_argument("--size", type=size_wh, default=(3024, 4032), help="photo WIDTHxHEIGHT (default 12 MP)")
    parser.add_argument("--masks", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "placement")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args.model_dir, args.providers, args.size, args.masks, args.concurrency, args.out)
    (args.out / "placement.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
