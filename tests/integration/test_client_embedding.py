"""The Python client's embeddings (``get_embedding``, ``extract(embedding=...)``, ``.npz`` files) and the
CLI's ``--save-embedding`` / ``--embedding``, against the session's real tiny server. Masks are compared
with the in-process runtime's answer for the photo itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.holds import HoldExtractor
from runtime.settings import RuntimeSettings
from sagemaker_client import Embedding, SageMakerSAMClient
from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO, LocalEndpoint
from tests.reference import decode_mask, in_process_mask

PHOTO = wall_photo(width=756, height=1008, holds=25, seed=3)
POINTS = PHOTO.clicks(3)


@pytest.fixture(scope="module")
def embedding32(tiny_model_dir: Path) -> np.ndarray:
    """The in-process runtime's float32 embedding of PHOTO."""
    entry, *_ = HoldExtractor.from_model_dir(tiny_model_dir, RuntimeSettings()).embed(PHOTO.jpeg)
    return np.asarray(entry.embedding, np.float32)


@pytest.fixture(scope="module")
def expected(tiny_model_dir: Path) -> np.ndarray:
    return in_process_mask(tiny_model_dir, PHOTO.jpeg, POINTS)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_get_embedding_returns_the_runtimes_array(tiny_client: SageMakerSAMClient, embedding32: np.ndarray,
                                                  dtype: str) -> None:
    embedding = tiny_client.get_embedding(PHOTO.jpeg, dtype)
    assert embedding.array.dtype == np.dtype(dtype) and embedding.array.shape == embedding32.shape
    assert embedding.array.tobytes() == embedding32.astype(dtype).tobytes()
    assert embedding.original_size_hw == (1008, 756) and embedding.metadata["encoder_variant"] == "fp32"


@pytest.mark.parametrize("fmt", ["json", "zip"])
def test_extract_with_a_float32_embedding_equals_the_photos_answer(tiny_client: SageMakerSAMClient,
                                                                   expected: np.ndarray, fmt: str) -> None:
    embedding = tiny_client.get_embedding(PHOTO.jpeg, "float32")
    result = tiny_client.extract(None, POINTS, embedding=embedding, fmt=fmt)  # type: ignore[arg-type]
    assert result.mask_image is not None and np.array_equal(decode_mask(result.mask_image), expected)
    assert result.result_image is None and result.image_id is None


def test_npz_round_trip_keeps_array_and_metadata(tiny_client: SageMakerSAMClient, tmp_path: Path) -> None:
    embedding = tiny_client.get_embedding(PHOTO.jpeg)
    read = Embedding.from_npz(embedding.to_npz(tmp_path / "wall.npz"))
    assert read.array.dtype == np.float16 and read.array.tobytes() == embedding.array.tobytes()
    assert read.metadata == embedding.metadata
    scales = embedding.metadata["point_transform"]
    mapped = read.to_model_coords([(755.0, 1007.0)])
    assert mapped.dtype == np.float32 and mapped.tolist() == [[np.float32(755.0 * scales["scale_x"]),
                                                               np.float32(1007.0 * scales["scale_y"])]]
    (tmp_path / "other.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not an embedding file"):
        Embedding.from_npz(tmp_path / "other.npz")


def _cli(server: LocalEndpoint, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", "sam-climbing-endpoint",
                           "--endpoint-url", server.url, *args], capture_output=True, text=True, timeout=180,
                          check=False)


def test_cli_saves_an_embedding_and_taps_with_it(tiny_server: LocalEndpoint, tmp_path: Path, expected: np.ndarray,
                                                 embedding32: np.ndarray) -> None:
    photo = tmp_path / "wall.jpg"
    photo.write_bytes(PHOTO.jpeg)
    saved = _cli(tiny_server, "--test-image", str(photo), "--save-embedding", str(tmp_path / "wall.npz"),
                 "--embedding-dtype", "float32")
    assert saved.returncode == 0, saved.stderr
    report = json.loads(saved.stdout)
    assert report["embedding"] == str(tmp_path / "wall.npz") and report["dtype"] == "float32"
    assert Embedding.from_npz(tmp_path / "wall.npz").array.tobytes() == embedding32.tobytes()
    points = ";".join(f"{x},{y}" for x, y in POINTS)
    tapped = _cli(tiny_server, "--embedding", str(tmp_path / "wall.npz"), "--points", points, "--mask-format", "png",
                  "--out-dir", str(tmp_path / "out"), "--expect-holds")
    assert tapped.returncode == 0, tapped.stderr
    mask = np.asarray(Image.open(tmp_path / "out" / "mask.png").convert("L")) > 0
    assert np.array_equal(mask, expected)
    assert not (tmp_path / "out" / "result.webp").exists()


def test_cli_refuses_embedding_flags_that_cannot_work(tiny_server: LocalEndpoint, tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    unreadable = _cli(tiny_server, "--embedding", str(tmp_path / "bad.npz"), "--points", "10,10")
    assert unreadable.returncode == 1 and "not an embedding file" in unreadable.stderr
    both = _cli(tiny_server, "--embedding", str(tmp_path / "bad.npz"), "--test-image", str(tmp_path / "bad.npz"))
    assert both.returncode == 2 and "exactly one of" in both.stderr
    no_photo = _cli(tiny_server, "--save-embedding", str(tmp_path / "x.npz"), "--image-id", "0" * 32)
    assert no_photo.returncode == 2 and "--save-embedding needs --test-image" in no_photo.stderr
