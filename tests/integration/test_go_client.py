"""bin/holds-extract (the Go client, clients/go) against the real server on the tiny model."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO
from tests.reference import decode_mask, in_process_mask

PHOTO = wall_photo(width=756, height=1008, holds=25, seed=3)
POINTS = PHOTO.clicks(3)


@pytest.fixture(scope="module")
def holds_extract() -> Path:
    if shutil.which("go") is None:
        pytest.skip("Go is not installed (CI installs golang-go)")
    subprocess.run(["make", "-s", "go-client"], cwd=REPO, check=True, timeout=300)
    return REPO / "bin" / "holds-extract"


def test_go_mask_equals_the_reference(tiny_server, tiny_model_dir: Path, holds_extract: Path,  # type: ignore[no-untyped-def]
                                      tmp_path: Path) -> None:
    image = tmp_path / "wall.jpg"
    image.write_bytes(PHOTO.jpeg)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": tiny_server.url}
    points = ";".join(f"{x},{y}" for x, y in POINTS)
    run = subprocess.run([str(holds_extract), "-endpoint-name", "sam-climbing-endpoint", "-image", str(image),
                          "-points", points, "-out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, check=False, timeout=120)
    assert run.returncode == 0, run.stderr
    mask = decode_mask((tmp_path / "out" / "mask.png").read_bytes())
    assert np.array_equal(mask, in_process_mask(tiny_model_dir, PHOTO.jpeg, POINTS))


def test_go_failure_is_one_line(holds_extract: Path, tmp_path: Path) -> None:
    run = subprocess.run([str(holds_extract), "-image", str(tmp_path / "missing.jpg"), "-points", "1,2"],
                         capture_output=True, text=True, check=False, timeout=60)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "missing.jpg" in run.stderr
