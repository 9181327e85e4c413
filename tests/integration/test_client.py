"""sagemaker_client.py against the real server: formats, follow-ups, verification, errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sagemaker_client import EndpointError, SageMakerSAMClient, verify
from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO
from tests.reference import decode_mask, in_process_mask

PHOTO = wall_photo(width=756, height=1008, holds=25, seed=3)
POINTS = PHOTO.clicks(3)


@pytest.fixture(scope="module")
def client(tiny_client: SageMakerSAMClient) -> SageMakerSAMClient:
    return tiny_client


@pytest.fixture(scope="module")
def expected(tiny_model_dir: Path) -> np.ndarray:
    """The in-process runtime's union mask for PHOTO and POINTS: what every client must get."""
    return in_process_mask(tiny_model_dir, PHOTO.jpeg, POINTS)


@pytest.mark.parametrize("fmt", ["json", "zip", "raw"])
def test_formats_give_the_same_verified_answer(client: SageMakerSAMClient, fmt: str, expected: np.ndarray) -> None:
    result = client.extract(PHOTO.jpeg, POINTS, fmt=fmt)  # type: ignore[arg-type]
    assert verify(result, PHOTO.jpeg) == []
    assert result.mask_image is not None and np.array_equal(decode_mask(result.mask_image), expected)


def test_session_follow_up_and_close(client: SageMakerSAMClient, tiny_model_dir: Path) -> None:
    first = client.extract(PHOTO.jpeg, POINTS[:1], open_session=True)
    assert first.session_id and len(first.session_id) == 32
    assert first.mask_image is not None
    assert np.array_equal(decode_mask(first.mask_image), in_process_mask(tiny_model_dir, PHOTO.jpeg, POINTS[:1]))
    follow = client.follow_up(POINTS[1:], session_id=first.session_id)
    assert follow.metadata["cache_hit"] and follow.metadata["image_id"] == first.image_id
    assert follow.mask_image is not None
    assert np.array_equal(decode_mask(follow.mask_image), in_process_mask(tiny_model_dir, PHOTO.jpeg, POINTS[1:]))
    assert client.close_session(first.session_id) == first.session_id
    with pytest.raises(EndpointError, match="404"):
        client.follow_up(POINTS[1:], session_id=first.session_id)


def test_verify_catches_a_wrong_answer(client: SageMakerSAMClient) -> None:
    result = client.extract(PHOTO.jpeg, POINTS)
    pixels = np.array(Image.open(io.BytesIO(result.result_image)))  # type: ignore[arg-type]
    pixels[0, 0, 3] = 128
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    result.result_image = buffer.getvalue()
    assert any("alpha" in problem for problem in verify(result, PHOTO.jpeg))


def test_cli_writes_pngs_and_reports_errors(tiny_server, tmp_path: Path, expected: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    image = tmp_path / "wall.jpg"
    image.write_bytes(PHOTO.jpeg)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    base = [sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", "sam-climbing-endpoint",
            "--endpoint-url", tiny_server.url, "--region", "us-east-1", "--test-image", str(image)]
    points = ";".join(f"{x},{y}" for x, y in POINTS)
    ok = subprocess.run([*base, "--points", points, "--follow-up", points, "--out-dir", str(tmp_path / "out"), "--verify"],
                        capture_output=True, text=True, env=env, check=False, timeout=120)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["first_request_s"] > 0 and report["follow_up_s"] > 0
    assert (tmp_path / "out" / "result.webp").is_file() and (tmp_path / "out" / "follow_up_mask.png").is_file()
    assert np.array_equal(decode_mask((tmp_path / "out" / "mask.png").read_bytes()), expected)
    assert np.array_equal(decode_mask((tmp_path / "out" / "follow_up_mask.png").read_bytes()), expected)
    bad = subprocess.run([*base, "--points", "99999,1"], capture_output=True, text=True, env=env, check=False, timeout=120)
    assert bad.returncode == 1 and "outside" in bad.stderr and "Traceback" not in bad.stderr
