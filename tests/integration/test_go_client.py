"""The Go client (clients/go) against real endpoints: our server on the tiny model, and the
rehearsal's SageMaker Runtime stand-in in front of it, SigV4-signed with test credentials.

This module starts the servers and writes what the Python client (``SageMakerSAMClient``)
answers to the same requests; ``make go-integration`` then runs the Go integration tests
(clients/go/holds/integration_test.go, build tag ``integration``) against them, which compare
their answers with these bytes. ``make go-test`` runs this module.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest

from holds_client.client import MAX_PAYLOAD_BYTES, SageMakerSAMClient
from synthetic.wall_photo import wall_photo
from tests.integration.rehearsal_stack import CREDENTIALS
from tests.integration.server import REPO
from tests.integration.test_data_plane_limits import _plane
from tests.reference import decode_mask, in_process_mask

PHOTO = wall_photo(width=756, height=1008, holds=25, seed=3)
POINTS = PHOTO.clicks(3)
GO_ENV = {**CREDENTIALS, "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
          "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def padded_jpeg(jpeg: bytes, size: int) -> bytes:
    """``jpeg`` grown to at least ``size`` bytes with COM segments after SOI (the pixels are unchanged)."""
    segments = []
    grown = len(jpeg)
    while grown < size:
        segments.append(b"\xff\xfe" + (65535).to_bytes(2, "big") + b"\x00" * 65533)
        grown += 65537
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


#: base64 of this photo is over 6 MiB, the file itself under: both clients send it raw.
RAW_PHOTO = padded_jpeg(PHOTO.jpeg, 5 * 1024 * 1024)


@pytest.fixture(scope="module")
def go() -> str:
    found = shutil.which("go")
    if found is None:
        pytest.skip("Go is not installed (CI installs golang-go and golang-github-aws-aws-sdk-go-v2-dev)")
    return found


@pytest.fixture(scope="module")
def plane(tiny_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    yield from _plane(tiny_server, tmp_path_factory.mktemp("go-plane") / "plane.log")


def python_answers(client: SageMakerSAMClient, out: Path) -> None:
    """The Python client's answers to the requests the Go tests make, as files in ``out``."""
    old = {"result_format": "png", "mask_format": "png"}
    extraction = client.extract(PHOTO.jpeg, POINTS, outputs=old)
    (out / "cutout.png").write_bytes(extraction.result_image or b"")
    (out / "mask.png").write_bytes(extraction.mask_image or b"")
    first = client.extract(PHOTO.jpeg, POINTS[:1])
    follow = client.follow_up(POINTS[1:], image_id=first.image_id)
    assert follow.metadata["cache_hit"] is True
    (out / "first_mask.png").write_bytes(first.mask_image or b"")
    (out / "follow_up_mask.png").write_bytes(follow.mask_image or b"")
    compact = client.extract(PHOTO.jpeg, POINTS, outputs={"result_format": "webp", "mask_format": "png1", "max_side": 500})
    (out / "compact_result.webp").write_bytes(compact.result_image or b"")
    (out / "compact_mask.png").write_bytes(compact.mask_image or b"")
    raw = client.extract(RAW_PHOTO, POINTS, outputs={"result_format": "none"})
    (out / "raw_mask.png").write_bytes(raw.mask_image or b"")


def rle_answer(url: str) -> dict[str, object]:
    """The server's COCO RLE of PHOTO and POINTS (the Python client does not ask for RLE)."""
    body = {"image_base64": base64.b64encode(PHOTO.jpeg).decode(),
            "points": [{"x": x, "y": y} for x, y in POINTS], "outputs": {"result_format": "none", "mask_format": "rle"}}
    answer = httpx.post(url + "/invocations", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json()["mask_rle"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def expected(plane: str, tiny_server, tiny_model_dir: Path,  # type: ignore[no-untyped-def]
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the photos, the points and the Python client's answers (through the data plane)."""
    out = tmp_path_factory.mktemp("go-expected")
    signed = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    python_answers(SageMakerSAMClient("sam-climbing-endpoint", endpoint_url=plane, session=signed), out)
    reference = in_process_mask(tiny_model_dir, PHOTO.jpeg, POINTS)
    for name in ("mask.png", "raw_mask.png"):  # the Python answers are right, so equal bytes are right too
        assert np.array_equal(decode_mask((out / name).read_bytes()), reference), name
    (out / "photo.jpg").write_bytes(PHOTO.jpeg)
    (out / "raw_photo.jpg").write_bytes(RAW_PHOTO)
    (out / "points.json").write_text(json.dumps([[x, y] for x, y in POINTS]))
    (out / "mask_rle.json").write_text(json.dumps(rle_answer(tiny_server.url)))
    return out


def test_raw_photo_is_between_the_limits() -> None:
    assert len(RAW_PHOTO) < MAX_PAYLOAD_BYTES < 4 * len(RAW_PHOTO) // 3


def test_go_integration_tests_pass(go: str, plane: str, tiny_server, expected: Path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, **GO_ENV, "HOLDS_IT_PLANE_URL": plane, "HOLDS_IT_SERVER_URL": tiny_server.url,
           "HOLDS_IT_DIR": str(expected)}
    run = subprocess.run(["make", "-s", "go-integration"], cwd=REPO, env=env, capture_output=True, text=True,
                         check=False, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "--- PASS: TestIntegration" in run.stdout and "SKIP" not in run.stdout, run.stdout


@pytest.fixture(scope="module")
def holds_extract(go: str) -> Path:
    subprocess.run(["make", "-s", "go-client"], cwd=REPO, check=True, timeout=300)
    return REPO / "bin" / "holds-extract"


def test_command_writes_the_python_clients_files(holds_extract: Path, plane: str, expected: Path,
                                                 tmp_path: Path) -> None:
    points = ";".join(f"{x},{y}" for x, y in POINTS)
    env = {**os.environ, **GO_ENV, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": plane}
    run = subprocess.run([str(holds_extract), "-endpoint-name", "sam-climbing-endpoint", "-image",
                          str(expected / "photo.jpg"), "-points", points, "-follow-up", points, "-out", str(tmp_path)],
                         capture_output=True, text=True, env=env, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["follow_up_cache_hit"] is True and report["variant"] == "Primary"
    assert (tmp_path / "result.png").read_bytes() == (expected / "cutout.png").read_bytes()
    assert (tmp_path / "mask.png").read_bytes() == (expected / "mask.png").read_bytes()
    assert (tmp_path / "follow_up_mask.png").read_bytes() == (expected / "mask.png").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["-image", "missing.jpg", "-points", "1,2"], "missing.jpg"),
    (["-image", "photo.jpg", "-points", "1,2;x"], "-points: point 2"),
    (["-image", "photo.jpg", "-points", "99999,1"], "endpoint answered 400 invalid_points"),
    (["-image-id", "0" * 32, "-points", "1,2"], "endpoint answered 404 unknown_image_id"),
    (["-no-such-flag"], "flag provided but not defined"),
])
def test_command_failure_is_one_line(holds_extract: Path, plane: str, expected: Path, tmp_path: Path,
                                     args: list[str], message: str) -> None:
    env = {**os.environ, **GO_ENV, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": plane}
    run = subprocess.run([str(holds_extract), "-endpoint-name", "sam-climbing-endpoint", "-out", str(tmp_path), *args],
                         cwd=expected, capture_output=True, text=True, env=env, check=False, timeout=120)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    assert "goroutine" not in run.stderr and run.stdout == ""
