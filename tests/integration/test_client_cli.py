"""sagemaker_client.py as a newcomer uses it: no AWS set-up against a local server, every option of
the API on the command line, one clear line per failure. Masks are compared with the in-process
runtime's answer for the same prompt."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from sagemaker_client import EndpointError, SageMakerSAMClient
from serving.service import RANDOM_WEIGHTS_WARNING
from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO, free_port
from tests.reference import require_nontrivial

PHOTO = wall_photo(width=756, height=1008, holds=25, seed=3)  # EXIF orientation 6: clicks are upright pixels
CLICKS = PHOTO.clicks(4)
BOX = (100.0, 150.0, 650.0, 900.0)


@pytest.fixture(scope="module")
def extractor(tiny_model_dir: Path) -> HoldExtractor:
    return HoldExtractor.from_model_dir(tiny_model_dir, RuntimeSettings())


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "wall.jpg"
    path.write_bytes(PHOTO.jpeg)
    return path


def clean_env(home: Path) -> dict[str, str]:
    """No AWS variables and an empty home (no ~/.aws): a newcomer's shell."""
    home.mkdir(parents=True, exist_ok=True)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "HOME": str(home)}


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", "sam-climbing-endpoint",
                           *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)


def points_arg(points: list[tuple[float, float]]) -> str:
    return ";".join(f"{x},{y}" for x, y in points)


def mask_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 0


def expected(extractor: HoldExtractor, points: list[tuple[float, float]], labels: list[int] | None = None,
             box: tuple[float, float, float, float] | None = None, **options: Any) -> np.ndarray:
    labels = labels or [1] * len(points)
    clicks = tuple(Click(x, y, label) for (x, y), label in zip(points, labels))
    request = ExtractRequest(clicks, image_bytes=PHOTO.jpeg, box_xyxy=box, options=ExtractOptions(**options),
                             need_pixels=False)
    return require_nontrivial(extractor.extract(request).mask)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def test_local_endpoint_needs_no_aws_setup(tiny_server, extractor: HoldExtractor, photo_file: Path,  # type: ignore[no-untyped-def]
                                           tmp_path: Path) -> None:
    result = run_cli("--endpoint-url", tiny_server.url, "--test-image", str(photo_file), "--points",
                     points_arg(CLICKS[:2]), "--out-dir", str(tmp_path / "out"), "--verify", env=clean_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["warnings"] == [RANDOM_WEIGHTS_WARNING]
    assert result.stderr.strip() == f"warning: {RANDOM_WEIGHTS_WARNING}"
    assert np.array_equal(mask_of(tmp_path / "out" / "mask.png"), expected(extractor, CLICKS[:2]))
    assert Image.open(tmp_path / "out" / "result.webp").format == "WEBP"  # the compact default


@pytest.mark.parametrize("fmt,mode", [("json", "per_click"), ("zip", "single"), ("raw", "per_click"), ("raw", "single")])
def test_every_prompt_and_output_option_reaches_the_server(tiny_server, extractor: HoldExtractor, photo_file: Path,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path, fmt: str, mode: str) -> None:
    points, labels = CLICKS[:3], [1, 0, 1]
    result = run_cli("--endpoint-url", tiny_server.url, "--test-image", str(photo_file), "--format", fmt,
                     "--points", points_arg(points), "--labels", "1,0,1", "--box", ",".join(map(str, BOX)),
                     "--mode", mode, "--multimask", "--min-area", "40", "--max-side", "500", "--mask-format", "png",
                     "--result-format", "none", "--png-level", "3", "--out-dir", str(tmp_path / "out"),
                     env=clean_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    mask = Image.open(tmp_path / "out" / "mask.png")
    assert mask.mode == "L" and mask.size == (375, 500)  # 8-bit mask scaled to max_side
    want = expected(extractor, points, labels, BOX, mode=mode, multimask=True, min_area=40, max_output_side=500)
    assert np.array_equal(np.asarray(mask) > 0, want)
    assert not list((tmp_path / "out").glob("result.*"))  # result_format none
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert len(metadata["clicks"]) == (1 if mode == "single" else 2)  # label-0 clicks join every prompt


def test_per_click_masks_and_mask_only_answers(tiny_server, extractor: HoldExtractor, photo_file: Path,  # type: ignore[no-untyped-def]
                                               tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    per_click = run_cli("--endpoint-url", tiny_server.url, "--test-image", str(photo_file), "--points",
                        points_arg(CLICKS[:2]), "--per-click-masks", "--out-dir", str(tmp_path / "a"), env=env)
    assert per_click.returncode == 0, per_click.stderr
    for index, point in enumerate(CLICKS[:2], start=1):
        assert np.array_equal(mask_of(tmp_path / "a" / f"click_{index}_mask.png"), expected(extractor, [point]))
    mask_only = run_cli("--endpoint-url", tiny_server.url, "--test-image", str(photo_file), "--points",
                        points_arg(CLICKS[:2]), "--accept", "png", "--out-dir", str(tmp_path / "b"), env=env)
    assert mask_only.returncode == 0, mask_only.stderr
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["mask.png", "metadata.json"]
    assert np.array_equal(mask_of(tmp_path / "b" / "mask.png"), expected(extractor, CLICKS[:2]))


def test_sessions_image_ids_and_follow_ups(tiny_server, extractor: HoldExtractor, photo_file: Path,  # type: ignore[no-untyped-def]
                                           tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home")
    base = ("--endpoint-url", tiny_server.url)
    opened = run_cli(*base, "--test-image", str(photo_file), "--points", points_arg(CLICKS[:1]), "--keep-session",
                     "--follow-up", points_arg(CLICKS[1:2]), "--out-dir", str(tmp_path / "a"), env=env)
    assert opened.returncode == 0, opened.stderr
    report = json.loads(opened.stdout)
    assert report["follow_up_cache_hit"] is True and report["session_id"]
    assert np.array_equal(mask_of(tmp_path / "a" / "follow_up_mask.png"), expected(extractor, CLICKS[1:2]))
    in_session = run_cli(*base, "--session-id", report["session_id"], "--points", points_arg(CLICKS[2:3]),
                         "--close-session", "--out-dir", str(tmp_path / "b"), env=env)
    assert in_session.returncode == 0, in_session.stderr
    assert json.loads(in_session.stdout)["cache_hit"] is True
    assert np.array_equal(mask_of(tmp_path / "b" / "mask.png"), expected(extractor, CLICKS[2:3]))
    closed = run_cli(*base, "--session-id", report["session_id"], "--points", points_arg(CLICKS[2:3]), env=env)
    assert closed.returncode == 1 and error_lines(closed) == [error_lines(closed)[0]]
    assert "endpoint error 404: session" in closed.stderr and "unknown or already closed" in closed.stderr
    by_id = run_cli(*base, "--image-id", report["image_id"], "--points", points_arg(CLICKS[3:4]),
                    "--out-dir", str(tmp_path / "c"), env=env)
    assert by_id.returncode == 0 and json.loads(by_id.stdout)["cache_hit"] is True
    assert np.array_equal(mask_of(tmp_path / "c" / "mask.png"), expected(extractor, CLICKS[3:4]))


def test_health_of_a_local_endpoint(tiny_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("--endpoint-url", tiny_server.url, "--health", env=clean_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"healthy": True, "url": tiny_server.url + "/ping", "http_status": 200}


@pytest.mark.parametrize("args,local,status,fragment", [
    (["--points", "1,2;abc"], True, 2, "argument --points: point 2: 'abc' is not a number"),
    (["--points", "1,2,3"], True, 2, "point 1 '1,2,3' must be two numbers x,y"),
    (["--box", "1,2,3"], True, 2, "must be four numbers x0,y0,x1,y1"),
    (["--points", "10,10", "--labels", "1,0"], True, 1, "2 labels for 1 points"),
    (["--points", "99999,1"], True, 1, "outside"),
    (["--points", "10,10", "--test-image", "/nonexistent/wall.jpg"], True, 1, "No such file"),
    (["--points", "10,10", "--async"], True, 2, "--async needs --test-image and --bucket"),
    (["--points", "10,10"], False, 1, "no AWS region: pass --region"),
    (["--points", "10,10", "--region", "us-east-1"], False, 1, "no AWS credentials found"),
    (["--health", "--region", "us-east-1"], False, 1, "no AWS credentials found"),
    (["--image-id", "0" * 32, "--session-id", "abc", "--points", "1,1"], True, 2,
     "exactly one of --test-image, --image-id, --session-id, --embedding (got --image-id, --session-id)"),
])
def test_every_failure_is_one_clear_line(tiny_server, photo_file: Path, tmp_path: Path, args: list[str], local: bool,  # type: ignore[no-untyped-def]
                                         status: int, fragment: str) -> None:
    args = [str(photo_file) if arg == "PHOTO" else arg for arg in args]
    image = [] if "--test-image" in args or "--health" in args else ["--test-image", str(photo_file)]
    where = ["--endpoint-url", tiny_server.url] if local else []
    result = run_cli(*where, *image, *args, env=clean_env(tmp_path / "home"))
    lines = error_lines(result)
    assert result.returncode == status and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_an_unreachable_local_endpoint_is_one_line(photo_file: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    for extra in (["--test-image", str(photo_file), "--points", "10,10"], ["--health"]):
        result = run_cli("--endpoint-url", dead, *extra, env=clean_env(tmp_path / "home"))
        assert result.returncode == 1 and len(error_lines(result)) == 1, result.stderr
        assert "could not reach" in result.stderr and "Traceback" not in result.stderr


def test_library_extract_takes_a_box(tiny_server, extractor: HoldExtractor) -> None:  # type: ignore[no-untyped-def]
    client = SageMakerSAMClient("sam-climbing-endpoint", endpoint_url=tiny_server.url)
    result = client.extract(PHOTO.jpeg, box=BOX, outputs={"result_format": "none"})
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result.mask_image))) > 0,  # type: ignore[arg-type]
                          expected(extractor, [], box=BOX))
    with pytest.raises(ValueError, match="four finite numbers"):
        client.extract(PHOTO.jpeg, box=(1.0, 2.0, 3.0, float("nan")))


def test_a_photo_too_large_for_json_goes_raw_or_is_refused_before_sending(tiny_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    noise = np.random.default_rng(0).integers(0, 256, (1300, 1400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    png = buffer.getvalue()
    assert 4.8e6 < len(png) < 6 * 1024 * 1024 < len(png) * 4 / 3  # fits raw, not as base64
    client = SageMakerSAMClient("sam-climbing-endpoint", endpoint_url=tiny_server.url)
    with pytest.raises(EndpointError, match=r"over SageMaker's real-time limit of 6291456 bytes.*--format raw"):
        client.extract(png, [(10.0, 10.0)], fmt="json")
    result = client.extract(png, [(10.0, 10.0)], outputs={"result_format": "none"})  # auto: sent raw
    assert Image.open(io.BytesIO(result.mask_image)).size == (1400, 1300)  # type: ignore[arg-type]
