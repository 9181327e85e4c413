"""A model exported with random weights says so in every answer; `make demo` re-exports when the
weights asked for differ from the export it finds."""

from __future__ import annotations

import base64
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
import torch

from export.sam_models import build_random
from runtime.manifest import sha256_of_file
from serving.config import ServerSettings
from serving.service import RANDOM_WEIGHTS_WARNING, HoldService, RequestContext, parse, serialise
from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO

sys.path.insert(0, str(REPO / "scripts"))
import demo  # scripts/ is not a package

PHOTO = wall_photo(width=400, height=300, holds=6, seed=21, orientation=1)
POINT = {"x": PHOTO.clicks(1)[0][0], "y": PHOTO.clicks(1)[0][1]}


def test_every_answer_of_a_random_model_carries_the_warning(tiny_server) -> None:  # type: ignore[no-untyped-def]
    url = tiny_server.url + "/invocations"
    as_json = httpx.post(url, json={"image_base64": base64.b64encode(PHOTO.jpeg).decode(), "points": [POINT]},
                         headers={"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"}, timeout=60)
    assert as_json.status_code == 200 and as_json.json()["warnings"] == [RANDOM_WEIGHTS_WARNING]
    assert "weights=random" in as_json.headers["x-amzn-sagemaker-custom-attributes"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("image.bin", PHOTO.jpeg)
        zipped.writestr("points.json", json.dumps({"points": [POINT]}))
    as_zip = httpx.post(url, content=archive.getvalue(), headers={"Content-Type": "application/zip"}, timeout=60)
    with zipfile.ZipFile(io.BytesIO(as_zip.content)) as answer:
        assert json.loads(answer.read("metadata.json"))["warnings"] == [RANDOM_WEIGHTS_WARNING]
    mask_only = httpx.post(url, json={"image_id": as_json.json()["image_id"], "points": [POINT]},
                           headers={"Accept": "image/png"}, timeout=60)
    assert mask_only.headers["content-type"] == "image/png"
    assert "weights=random" in mask_only.headers["x-amzn-sagemaker-custom-attributes"]
    session = as_json.headers["x-amzn-sagemaker-new-session-id"].split(";")[0]
    closed = httpx.post(url, json={"close_session": True}, headers={"X-Amzn-SageMaker-Session-Id": session}, timeout=60)
    assert closed.json()["warnings"] == [RANDOM_WEIGHTS_WARNING]


def test_a_model_with_real_weights_carries_no_warning(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["weights"] = {"origin": "checkpoint", "file": "sam.pth", "sha256": "0" * 64}
    (model / "manifest.json").write_text(json.dumps(manifest))
    real = HoldService.from_model_dir(model, ServerSettings(model_dir=model))
    random = HoldService.from_model_dir(tiny_model_dir, ServerSettings(model_dir=tiny_model_dir))
    body = json.dumps({"image_base64": base64.b64encode(PHOTO.jpeg).decode(), "points": [POINT]})
    for service, warnings in ((real, []), (random, [RANDOM_WEIGHTS_WARNING])):
        prediction = service.predict(parse(body, "application/json", RequestContext(request_id="t")))
        payload, _ = serialise(prediction, "application/json")
        assert json.loads(payload)["warnings"] == warnings
        assert ("weights=random" in prediction.headers["X-Amzn-SageMaker-Custom-Attributes"]) == bool(warnings)


def test_demo_reuses_an_export_only_when_its_weights_are_the_ones_asked_for(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")
    digest = sha256_of_file(checkpoint)
    assert not demo.reusable(None, None)
    assert not demo.reusable({"origin": "random", "seed": 0}, None)  # try the official download again
    assert not demo.reusable({"origin": "random", "seed": 0}, checkpoint)  # the offline run's export
    assert not demo.reusable({"origin": "checkpoint", "sha256": "0" * 64}, checkpoint)  # another file
    assert demo.reusable({"origin": "checkpoint", "sha256": digest}, checkpoint)
    assert demo.reusable({"origin": "official", "sha256": digest}, checkpoint)
    assert demo.reusable({"origin": "official", "sha256": digest}, None)


def test_demo_re_exports_a_random_export_when_given_a_checkpoint(tiny_model_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    models = tmp_path / "tiny"
    shutil.copytree(tiny_model_dir, models)  # what an offline `make demo` left: random weights
    checkpoint = tmp_path / "tiny_seed_7.pth"
    torch.save(build_random("tiny", 7).state_dict(), checkpoint)
    assert demo.export_model("tiny", models, checkpoint) == "checkpoint"
    weights = json.loads((models / "manifest.json").read_text())["weights"]
    assert weights == {"origin": "checkpoint", "file": checkpoint.name, "sha256": sha256_of_file(checkpoint)}
    before = (models / "manifest.json").stat().st_mtime_ns
    assert demo.export_model("tiny", models, checkpoint) == "checkpoint"
    assert (models / "manifest.json").stat().st_mtime_ns == before  # same weights: reused, not exported again
    assert "reusing the tiny export" in capsys.readouterr().out
