"""Build the serving image with buildah and run it for real (``make container-test``, ``make container-test-gpu``).

1. A stand-in for ``python:3.11-slim`` from Debian bookworm (``standin_base``), passed in
   through ``Dockerfile.sagemaker``'s ``PYTHON_IMAGE`` build argument.
2. ``buildah bud`` of the CPU or GPU variant (``--cuda-major``, ``--tensorrt``).
3. A tiny model exported on the host (``export/export_sam.py --model-type tiny --random-weights``).
4. CPU image: the entrypoint with ``serve`` as SageMaker runs it (``serve_check``): /ping 200,
   the in-process runtime's mask, JSON-only stdout, exit 0 on SIGTERM.
   GPU image (no GPU needed, ``gpu_checks``): onnxruntime and its providers, every CUDA
   library by name, TensorRT by name or the runtime's reason to leave it out, the TensorRT
   provider's DT_NEEDED, sm_75 SASS; the entrypoint with the image's SAM_REQUIRE_GPU=true
   exits with the reason on a machine without a GPU; with SAM_REQUIRE_GPU=false it serves on
   CPU with the in-process answer and no ONNX Runtime banner on stdout.
5. Sizes and times go to ``out/container-test/<variant>.json``; every container, image and
   the whole buildah storage root are removed at the end (``--keep`` keeps them).

Needs root, ``buildah`` and ``debootstrap`` (Debian packages; ``readelf`` from binutils for
the GPU image), and the project's virtual environment (``make venv``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scripts.container import gpu_checks
from scripts.container.buildah import Buildah, BuildahError
from scripts.container.serve_check import CheckFailed, require, serve_and_check, start_fails_with, stdout_problems
from scripts.container.standin_base import build_standin_base

STANDIN = "localhost/sam-python-standin:3.11-bookworm"
NVIDIA_INDEX_HOST = "pypi.nvidia.com"  # where pip fetches tensorrt-cu1x-libs (PyPI has only a stub)


def tensorrt_choice(option: str) -> tuple[bool, str]:
    """(install TensorRT?, why): ``auto`` installs it when NVIDIA's index resolves."""
    if option != "auto":
        return option == "true", f"--tensorrt {option}"
    try:
        socket.getaddrinfo(NVIDIA_INDEX_HOST, 443)
        return True, f"{NVIDIA_INDEX_HOST} resolves"
    except OSError as exc:
        return False, (f"{NVIDIA_INDEX_HOST} cannot be reached from here ({exc}): TensorRT's wheels come only from "
                       "there, so this image is built with TENSORRT=false and the TensorRT checks are the "
                       "'left out' ones")


def export_tiny(out: Path) -> Path:
    """The tiny SAM with seeded random weights, exported and parity-checked on the host."""
    subprocess.run([sys.executable, str(REPO / "export" / "export_sam.py"), "--model-type", "tiny", "--random-weights",
                    "--seed", "0", "--output", str(out)], check=True, capture_output=True, text=True, timeout=900)
    return out


def timed(report: dict[str, Any], key: str, start: float) -> None:
    report[key] = round(time.monotonic() - start, 1)
    print(f"[container-test] {key.removesuffix('_s')}: {report[key]} s", flush=True)


def gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB ({size / 1e9:.2f} GB)"


def check_cpu_image(buildah: Buildah, image: str, model: Path, workdir: Path, report: dict[str, Any]) -> None:
    start = time.monotonic()
    serve = serve_and_check(buildah, image, model, workdir, {}, exact=True)
    timed(report, "run_checks_s", start)
    report["serve"] = {k: v for k, v in vars(serve).items() if k != "stdout"}


def check_gpu_image(buildah: Buildah, image: str, model: Path, workdir: Path, tensorrt: bool,
                    report: dict[str, Any]) -> None:
    start = time.monotonic()
    facts = gpu_checks.inside_image(buildah, image)
    report["inside"] = facts
    gpu_checks.check_inside(facts, tensorrt)
    container = buildah.container(image)
    try:
        rootfs = buildah.mount(container)
        needed = gpu_checks.tensorrt_needed(rootfs, facts["capi"])
        report["tensorrt_provider_needs"] = needed
        require(sorted(needed) == sorted(gpu_checks.TENSORRT_LIBRARIES),
                f"the TensorRT provider links {needed}, the runtime checks {gpu_checks.TENSORRT_LIBRARIES}")
        report["turing"] = gpu_checks.check_turing_code(gpu_checks.cuobjdump(workdir), rootfs, facts)
    finally:
        buildah.call("rm", container)
    code, stdout, stderr = start_fails_with(buildah, image, model, {})
    require(code != 0 and "GPU provider is required" in stdout + stderr,
            f"with SAM_REQUIRE_GPU=true and no GPU the entrypoint should exit naming the reason (code {code})")
    # serve() ends a failed start with a plain "error: ..." line on stderr; stdout holds JSON log lines only.
    bad = stdout_problems(stdout)
    require(not bad, f"stdout of the failed start has lines that are not JSON log objects, e.g. {bad[:3]}")
    report["require_gpu_exit"] = {"code": code, "reason": next(
        (line for line in (stdout + stderr).splitlines() if "GPU provider is required" in line), "")[-400:]}
    serve = serve_and_check(buildah, image, model, workdir, {"SAM_REQUIRE_GPU": "false", "SAM_CPU_ENGINE": "onnxruntime"},
                            exact=False)
    left_out = [line for line in serve.stdout.splitlines() if "TensorrtExecutionProvider left out" in line]
    if not tensorrt:
        require(len(left_out) == 1, f"expected one 'TensorRT left out' log line, got {len(left_out)}")
    report["serve_on_cpu"] = {k: v for k, v in vars(serve).items() if k != "stdout"}
    report["serve_on_cpu"]["tensorrt_log"] = [json.loads(line)["message"] for line in left_out]
    report["serve_on_cpu"]["onnxruntime_printed"] = [json.loads(line)["message"] for line in serve.stdout.splitlines()
                                                     if "ONNX Runtime printed" in line]
    timed(report, "run_checks_s", start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--cuda-major", choices=("12", "13"), default="12", help="GPU image: the CUDA stack")
    parser.add_argument("--tensorrt", choices=("auto", "true", "false"), default="auto",
                        help=f"GPU image: install TensorRT (auto: when {NVIDIA_INDEX_HOST} resolves)")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the buildah storage and images")
    parser.add_argument("--report", type=Path, help="JSON report (default out/container-test/<variant>.json)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sam-container-", dir="/var/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = REPO / "out" / "container-test"
    out.mkdir(parents=True, exist_ok=True)
    report_path = args.report or out / f"{args.variant}.json"
    report: dict[str, Any] = {"variant": args.variant, "ok": False}
    tensorrt, why = tensorrt_choice(args.tensorrt) if args.variant == "gpu" else (False, "")
    image = "localhost/sam-holds:cpu" if args.variant == "cpu" else f"localhost/sam-holds:gpu-cu{args.cuda_major}"
    build_args = {"VARIANT": args.variant, "PYTHON_IMAGE": STANDIN}
    if args.variant == "gpu":
        build_args |= {"CUDA_MAJOR": args.cuda_major, "TENSORRT": str(tensorrt).lower()}
        report["tensorrt"] = {"installed": tensorrt, "why": why}
        print(f"[container-test] TensorRT: {'yes' if tensorrt else 'no'} ({why})", flush=True)
    started = time.monotonic()
    buildah: Buildah | None = None
    try:
        buildah = Buildah(workdir / "buildah")
        start = time.monotonic()
        build_standin_base(buildah, workdir, STANDIN)
        timed(report, "standin_base_s", start)
        report["standin_base_bytes"] = buildah.image_size(STANDIN)
        start = time.monotonic()
        buildah.build(REPO / "Dockerfile.sagemaker", REPO, image, build_args, out / f"{args.variant}-build.log")
        timed(report, "image_build_s", start)
        report["image"], report["build_args"] = image, build_args
        report["image_bytes"] = buildah.image_size(image)
        print(f"[container-test] {image}: {gib(report['image_bytes'])}", flush=True)
        model = export_tiny(workdir / "model")
        if args.variant == "cpu":
            check_cpu_image(buildah, image, model, workdir, report)
        else:
            check_gpu_image(buildah, image, model, workdir, tensorrt, report)
        report["ok"] = True
    except (CheckFailed, BuildahError, subprocess.SubprocessError, RuntimeError, OSError) as exc:
        report["error"] = str(exc)
        print(f"[container-test] FAILED: {exc}", file=sys.stderr, flush=True)
    finally:
        timed(report, "total_s", started)
        report_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        if buildah is not None and not args.keep:
            buildah.cleanup()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = {k: report.get(k) for k in ("image", "standin_base_s", "image_build_s", "run_checks_s", "total_s")}
    print(f"[container-test] {'passed' if report['ok'] else 'FAILED'}: {json.dumps(summary)}; report {report_path}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
