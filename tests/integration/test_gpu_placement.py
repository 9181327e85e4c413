"""benchmarks/gpu_placement.py on the CPU: the placement report from ONNX Runtime's profiler, and
its check that would fail a GPU run with compute nodes on the CPU EP."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.gpu_placement import SHAPE_NODE_MAX_BYTES, placement

REPO = Path(__file__).resolve().parents[2]


def test_the_placement_report_runs_on_cpu_and_its_gpu_check_can_fail(tiny_model_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_placement.py"), "--model-dir",
                             str(tiny_model_dir), "--providers", "cpu", "--size", "320x240", "--masks", "3",
                             "--concurrency", "2", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## Placement (ONNX Runtime profiler, SAM_PROVIDERS=cpu)" in result.stdout
    report = json.loads((tmp_path / "placement.json").read_text())
    graphs = report["graphs"]
    assert set(graphs) == {"preprocess", "encoder", "decoder", "postprocess", "cutout_resize"}
    for role, graph in graphs.items():
        assert graph["provider"] == "cpu" and graph["nodes"] > 5, role
        assert sum(graph["cpu_ep_ops"].values()) >= graph["nodes"] - len(graph["memcpy_nodes"]), role
        assert f"| {role} | cpu | {graph['nodes']} |" in result.stdout
    assert graphs["postprocess"]["cpu_ep_ops"]["Resize"] == 2 and graphs["postprocess"]["cpu_ep_ops"]["Pad"] == 2
    memory = report["memory"]
    assert memory["renders"] == 2 and memory["masks_per_render"] == 3 and memory["renders_agree"]
    assert memory["size_hw"] == [240, 320] and memory["before_bytes"] > 0
    cutout = report["cutout"]
    assert graphs["cutout_resize"]["cpu_ep_ops"]["Resize"] == 1
    assert cutout["resized"] and cutout["out_size_hw"] == [120, 160] and cutout["copied_bytes"] == 120 * 160 * 3
    assert "Cut-out: cutout_resize.onnx on cpu to 160x120" in result.stdout

    # The same profile read as a GPU run's: the CPU EP's compute nodes are reported, its shape nodes not.
    profile = json.loads(next((tmp_path / "ort-profiles").glob("postprocess*.json")).read_text())
    flagged = placement(profile, on_gpu=True)["compute_on_cpu"]
    assert any(line.startswith("Resize ") for line in flagged) and any(line.startswith("Pad ") for line in flagged)
    assert not any(line.startswith("Shape ") for line in flagged)
    sizes = [int(line.rsplit("(", 1)[1].split()[0]) for line in flagged]
    assert min(sizes) > SHAPE_NODE_MAX_BYTES
