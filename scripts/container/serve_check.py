"""Run an image's entrypoint with ``serve`` as SageMaker does and check what it answers.

SageMaker starts ``docker run IMAGE serve`` with the model in ``/opt/ml/model`` and stops it
with SIGTERM. Here the same command line (the image's ENTRYPOINT plus ``serve``) runs under
``buildah run`` as the image's USER, with the exported model bind-mounted read-only at
``/opt/ml/model``. The container shares the host's network, so it listens on 127.0.0.1 and
a free port (``SAM_HOST``, ``SAGEMAKER_BIND_TO_PORT``) instead of 0.0.0.0:8080. Checks:
``/ping`` turns 200; the process runs as the image's user; an invocation returns the mask
that the runtime computes in-process on the host (``HoldExtractor``) and the cut-out built
from it; the playground's browser mode is served (onnxruntime-web from ``make web-runtime``, the
model's decoder_web.onnx); every stdout line is a JSON log object (no banner); SIGTERM makes it exit 0.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.masks import mask_iou
from runtime.settings import RuntimeSettings
from scripts.container.buildah import Buildah
from synthetic.test_images import synthetic_image
from tests.integration.server import free_port

IMAGE_HW = (600, 800)
POINTS = ({"x": 120.0, "y": 340.0}, {"x": 560.5, "y": 80.0}, {"x": 700.0, "y": 500.0})
PING_DEADLINE_S = 240.0  # SageMaker's default: /ping must answer 200 within 4 minutes of the start
SIGTERM_GRACE_S = 30.0  # SageMaker sends SIGKILL 30 s after SIGTERM


class CheckFailed(AssertionError):
    """A container check did not hold; the message says which and shows the evidence."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class ServeResult:
    """What one run of the entrypoint showed (times in seconds, request in milliseconds)."""

    ready_s: float | None = None
    uid: int | None = None
    request_ms: float | None = None
    mask_equal: bool | None = None
    mask_iou: float | None = None
    exit_code: int | None = None
    stop_s: float | None = None
    stdout_lines: int = 0
    stdout: str = field(default="", repr=False)


def image_env(config: dict[str, Any]) -> dict[str, str]:
    """The image's ENV as a dictionary."""
    return dict(item.split("=", 1) for item in config.get("Env") or [])


def request_payload() -> tuple[bytes, bytes]:
    """(JPEG bytes of the test photo, JSON request body with ``POINTS``)."""
    buffer = io.BytesIO()
    Image.fromarray(synthetic_image(IMAGE_HW, seed=31)).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    body = json.dumps({"image_base64": base64.b64encode(jpeg).decode(), "points": list(POINTS)}).encode()
    return jpeg, body


def in_process_mask(model_dir: Path, environ: dict[str, str], jpeg: bytes) -> NDArray[np.bool_]:
    """The runtime's own answer on the host, with the settings the container reads from ``environ``."""
    extractor = HoldExtractor.from_model_dir(model_dir, RuntimeSettings.from_env(environ))
    clicks = tuple(Click(p["x"], p["y"]) for p in POINTS)
    return extractor.extract(ExtractRequest(clicks, image_bytes=jpeg)).mask


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def server_pid(runner: subprocess.Popen[bytes], entrypoint: list[str]) -> int | None:
    """The entrypoint's process under ``buildah run`` (the one SageMaker's SIGTERM reaches), if started."""
    for pid in reversed(descendants(runner.pid)):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if os.path.basename(argv[0]).startswith("python") and entrypoint[1:] + ["serve"] == argv[1:3]:
            return pid
    return None


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise CheckFailed(f"no Uid line for process {pid}")


def stdout_problems(stdout: str) -> list[str]:
    """Lines of the server's stdout that are not JSON log objects."""
    bad = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    return bad


def check_answer(response: httpx.Response, jpeg: bytes, expected: NDArray[np.bool_], exact: bool,
                 result: ServeResult) -> None:
    """The served mask (and cut-out) against the in-process answer."""
    require(response.status_code == 200, f"/invocations answered {response.status_code}: {response.text[:500]}")
    data = response.json()
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["mask_image_base64"]))))
    rgba = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["result_image_base64"]))))
    require(mask.shape == IMAGE_HW and set(np.unique(mask)) <= {0, 255}, f"mask is not a binary {IMAGE_HW} image")
    served = mask > 0
    result.mask_equal = bool(np.array_equal(served, expected))
    result.mask_iou = float(mask_iou(served, expected))
    if exact:
        require(result.mask_equal, f"served mask differs from the in-process one (IoU {result.mask_iou:.6f})")
    else:
        require(result.mask_iou >= 0.999, f"served mask IoU {result.mask_iou:.6f} with the in-process one < 0.999")
    require(rgba.shape == (*IMAGE_HW, 4) and np.array_equal(rgba[..., 3], np.where(served, 255, 25)),
            "cut-out alpha is not 255 on the mask and 25 elsewhere")
    original = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    require(np.array_equal(rgba[..., :3], original), "cut-out RGB is not the photo's")


def check_browser_mode(url: str) -> None:
    """The image serves the playground's browser mode: onnxruntime-web (``make web-runtime``'s files,
    byte-equal to its record) and the model's decoder_web.onnx, cross-origin isolated."""
    info = httpx.get(url + "/playground/browser-mode.json", timeout=10).json()
    require(info["runtime"]["available"], f"browser mode: {info['runtime']['reason']} (before building the image)")
    require(info["decoder"]["available"], f"browser mode: {info['decoder']['reason']}")
    record = httpx.get(url + "/static/ort/onnxruntime-web.json", timeout=10).json()
    for name, digest in record["sha256"].items():
        response = httpx.get(f"{url}/static/ort/{name}", timeout=60)
        require(response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == digest,
                f"/static/ort/{name} is not the file make web-runtime copied")
        require(response.headers.get("cross-origin-embedder-policy") == "require-corp",
                f"/static/ort/{name} lacks COEP require-corp")


def serve_and_check(buildah: Buildah, image: str, model_dir: Path, workdir: Path, overrides: dict[str, str],
                    exact: bool) -> ServeResult:
    """Start the entrypoint with ``serve``, check /ping, one invocation, stdout and SIGTERM; always stops it."""
    config = buildah.image_config(image)
    entrypoint = list(config["Entrypoint"])
    port = free_port()
    env = {"SAGEMAKER_BIND_TO_PORT": str(port), "SAM_HOST": "127.0.0.1", "SAM_LOG_FORMAT": "json", **overrides}
    jpeg, body = request_payload()
    expected = in_process_mask(model_dir, {**image_env(config), **env}, jpeg)
    require(bool(expected.any()) and not bool(expected.all()), "the in-process mask is trivial: the check could not fail")
    result = ServeResult()
    container = buildah.container(image)
    stdout_path, stderr_path = workdir / f"{container}.stdout", workdir / f"{container}.stderr"
    argv = buildah.run_argv(container, [*entrypoint, "serve"], env, volumes=[f"{model_dir}:/opt/ml/model:ro"],
                            user=config.get("User") or None)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        runner = subprocess.Popen(argv, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while time.monotonic() - started < PING_DEADLINE_S:
            require(runner.poll() is None, f"the server exited with {runner.returncode} before /ping answered 200")
            try:
                if httpx.get(url + "/ping", timeout=2.0).status_code == 200:
                    result.ready_s = time.monotonic() - started
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        require(result.ready_s is not None, f"/ping did not answer 200 within {PING_DEADLINE_S:.0f} s")
        pid = server_pid(runner, entrypoint)
        require(pid is not None, "cannot find the entrypoint's process under buildah run")
        assert pid is not None
        result.uid = process_uid(pid)
        expected_uid = int((config.get("User") or "0").split(":")[0])
        require(expected_uid != 0, f"the image's USER is root ({config.get('User')!r}): SageMaker would run it as root")
        require(result.uid == expected_uid, f"the server runs as uid {result.uid}, the image says {expected_uid}")
        begin = time.monotonic()
        response = httpx.post(url + "/invocations", content=body, headers={"Content-Type": "application/json"},
                              timeout=120)
        result.request_ms = (time.monotonic() - begin) * 1000
        check_answer(response, jpeg, expected, exact, result)
        check_browser_mode(url)
        os.kill(pid, signal.SIGTERM)
        stopping = time.monotonic()
        result.exit_code = runner.wait(SIGTERM_GRACE_S)
        result.stop_s = time.monotonic() - stopping
        require(result.exit_code == 0, f"after SIGTERM the entrypoint exited with {result.exit_code}")
    except BaseException as exc:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
        logs = stdout_path.read_text(errors="replace")[-3000:] + stderr_path.read_text(errors="replace")[-3000:]
        raise CheckFailed(f"{exc}\n--- container output (tail) ---\n{logs}") from exc
    finally:
        buildah.call("rm", container)
    stdout = stdout_path.read_text(errors="replace")
    bad = stdout_problems(stdout)
    require(not bad, f"stdout has {len(bad)} lines that are not JSON log objects, e.g. {bad[:3]}")
    result.stdout_lines = len(stdout.splitlines())
    result.stdout = stdout
    require('"drained; exiting"' in stdout, "no 'drained; exiting' log line after SIGTERM")
    return result


def start_fails_with(buildah: Buildah, image: str, model_dir: Path, overrides: dict[str, str],
                     timeout_s: float = 240) -> tuple[int, str, str]:
    """Run the entrypoint with ``serve`` until it exits by itself: (exit code, stdout, stderr)."""
    config = buildah.image_config(image)
    env = {"SAGEMAKER_BIND_TO_PORT": str(free_port()), "SAM_HOST": "127.0.0.1", **overrides}
    container = buildah.container(image)
    try:
        done = subprocess.run(buildah.run_argv(container, [*config["Entrypoint"], "serve"], env,
                                               volumes=[f"{model_dir}:/opt/ml/model:ro"], user=config.get("User") or None),
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    finally:
        buildah.call("rm", container)
    return done.returncode, done.stdout, done.stderr
