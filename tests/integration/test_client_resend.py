"""The client and the CLI resend the photo once when a follow-up by image_id gets 404
unknown_image_id (the instance that answered never saw the photo), and say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runtime.cache import image_id_for
from sagemaker_client import EndpointError, HoldsResult, SageMakerSAMClient
from synthetic.wall_photo import wall_photo
from tests.integration.test_client_cli import clean_env, mask_of, points_arg, run_cli
from tests.reference import decode_mask, in_process_mask

PHOTO = wall_photo(width=640, height=480, holds=12, seed=23)
POINTS = PHOTO.clicks(2)


@pytest.fixture(scope="module")
def client(tiny_client: SageMakerSAMClient) -> SageMakerSAMClient:
    return tiny_client


def _answered_elsewhere(photo: bytes) -> HoldsResult:
    """A first answer given by another instance: its image_id, and the photo the client kept."""
    return HoldsResult(None, None, {"image_id": image_id_for(photo)}, 0.1, photo=photo)


def test_follow_up_of_resends_the_photo_once(client: SageMakerSAMClient, tiny_model_dir: Path) -> None:
    photo = PHOTO.jpeg + b"\x00" * 7  # bytes this server never saw (trailing bytes after the JPEG's end)
    follow = client.follow_up_of(_answered_elsewhere(photo), POINTS)
    assert follow.resent_photo and any("sent again" in w for w in follow.warnings)
    assert follow.mask_image is not None
    assert np.array_equal(decode_mask(follow.mask_image), in_process_mask(tiny_model_dir, photo, POINTS))
    known = client.follow_up_of(follow, POINTS[:1])  # now known: no resend
    assert not known.resent_photo and known.metadata["cache_hit"]


def test_without_the_photo_the_404_stands(client: SageMakerSAMClient) -> None:
    with pytest.raises(EndpointError, match="is unknown") as caught:
        client.follow_up(POINTS, image_id=image_id_for(PHOTO.jpeg + b"\x00" * 11))
    assert caught.value.status == 404


def test_cli_resends_the_photo_of_an_unknown_image_id(tiny_server, tiny_model_dir: Path,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    photo = PHOTO.jpeg + b"\x00" * 13
    (tmp_path / "wall.jpg").write_bytes(photo)
    result = run_cli("--endpoint-url", tiny_server.url, "--image-id", image_id_for(photo), "--test-image",
                     str(tmp_path / "wall.jpg"), "--points", points_arg(POINTS), "--out-dir", str(tmp_path / "out"),
                     env=clean_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["resent_photo"] is True and "sent again" in result.stderr
    assert np.array_equal(mask_of(tmp_path / "out" / "mask.png"), in_process_mask(tiny_model_dir, photo, POINTS))
