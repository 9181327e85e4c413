"""The rehearsal's SageMaker Runtime stand-in enforces SageMaker's real-time limits with SageMaker's
error shapes, and a 12 MP phone photo with the client's defaults fits them."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from synthetic.wall_photo import wall_photo
from tests.integration.server import REPO, LocalEndpoint, free_port

SIX_MIB = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """A 12 MP phone photo (3024x4032 upright, EXIF orientation 6) and three hold centres."""
    photo = wall_photo(seed=11)
    path = tmp_path_factory.mktemp("phone") / "wall.jpg"
    path.write_bytes(photo.jpeg)
    return path, photo.clicks(3)


def _plane(container: LocalEndpoint, log: Path, *extra: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # real-time needs no AWS set-up
    process = subprocess.Popen([sys.executable, "-m", "rehearsal.data_plane", "--container-url", container.url,
                                "--port", str(port), *extra], cwd=REPO, env=env, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise RuntimeError(log.read_text())
            try:
                httpx.get(url + "/ping", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def plane(tiny_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    yield from _plane(tiny_server, tmp_path_factory.mktemp("plane") / "plane.log")


def _runtime(url: str) -> object:
    return boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=url,
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))


def _cli(url: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "HOME": str(home)}
    return subprocess.run([sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", "sam-climbing-endpoint",
                           "--endpoint-url", url, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def _points(clicks: list[tuple[float, float]]) -> str:
    return ";".join(f"{x},{y}" for x, y in clicks)


def test_12mp_photo_with_the_client_defaults_fits_6_mib(plane: str, phone_photo: tuple[Path, list], tmp_path: Path) -> None:  # type: ignore[type-arg]
    path, clicks = phone_photo
    result = _cli(plane, "--test-image", str(path), "--points", _points(clicks), "--out-dir", str(tmp_path / "out"),
                  "--verify", home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "mask.png").size == (3024, 4032)
    body = {"image_base64": base64.b64encode(path.read_bytes()).decode(),  # the client's default request
            "points": [{"x": x, "y": y} for x, y in clicks], "outputs": {"result_format": "webp", "mask_format": "png1"}}
    answer = httpx.post(plane + "/endpoints/sam-climbing-endpoint/invocations", json=body, timeout=120)
    assert answer.status_code == 200 and len(answer.content) < SIX_MIB / 2, len(answer.content)


def test_an_answer_over_6_mib_is_our_413_naming_a_max_side_that_fits(plane: str, phone_photo: tuple[Path, list]  # type: ignore[type-arg]
                                                                     ) -> None:
    """The container refuses an answer SageMaker would drop (issue 24): 413 output_too_large, and
    the max_side it names gives an answer within 6 MiB."""
    path, clicks = phone_photo
    attributes = f"points={_points(clicks)}&result_format=png&mask_format=png"
    runtime = _runtime(plane)
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName="sam-climbing-endpoint", Body=path.read_bytes(),  # type: ignore[attr-defined]
                                ContentType="image/jpeg", CustomAttributes=attributes)
    response = raised.value.response
    assert response["Error"]["Code"] == "ModelError" and response["OriginalStatusCode"] == 413
    error = json.loads(response["OriginalMessage"])
    assert error["error"] == "output_too_large", error
    found = re.search(r"max_side to (\d+)", error["message"])
    assert found is not None, error
    max_side = int(found.group(1))
    assert 1000 < max_side < 4032
    answer = runtime.invoke_endpoint(EndpointName="sam-climbing-endpoint", Body=path.read_bytes(),  # type: ignore[attr-defined]
                                     ContentType="image/jpeg", CustomAttributes=f"{attributes}&max_side={max_side}")
    body = answer["Body"].read()
    assert len(body) <= SIX_MIB and json.loads(body)["height"] == max_side


def test_a_request_over_6_mib_gets_sagemakers_413(plane: str) -> None:
    runtime = _runtime(plane)
    with pytest.raises(ClientError) as raised:
        runtime.invoke_endpoint(EndpointName="sam-climbing-endpoint", Body=b"\xff\xd8\xff" + b"0" * SIX_MIB,  # type: ignore[attr-defined]
                                ContentType="image/jpeg")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error["Error"] == {"Code": "413", "Message": "HTTP content length exceeded 6291456 bytes."}


def test_custom_attributes_over_1024_characters_are_a_validation_error(plane: str) -> None:
    with pytest.raises(ClientError) as raised:
        _runtime(plane).invoke_endpoint(EndpointName="sam-climbing-endpoint", Body=b"x", ContentType="image/jpeg",  # type: ignore[attr-defined]
                                        CustomAttributes="points=" + "1,1;" * 300)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "Member must have length less than or equal to 1024" in raised.value.response["Error"]["Message"]


def test_container_errors_come_back_as_model_errors(plane: str, tmp_path: Path) -> None:
    with pytest.raises(ClientError) as raised:
        _runtime(plane).invoke_endpoint(EndpointName="sam-climbing-endpoint", ContentType="application/json",  # type: ignore[attr-defined]
                                        Body=json.dumps({"points": [{"x": 1, "y": 1}]}))
    response = raised.value.response
    assert response["Error"]["Code"] == "ModelError" and response["OriginalStatusCode"] == 400
    assert json.loads(response["OriginalMessage"])["error"] == "bad_request"
    health = _cli(plane, "--health", home=tmp_path / "home")  # /ping reaches the container through the stand-in
    assert health.returncode == 0 and json.loads(health.stdout)["healthy"] is True


def test_no_answer_within_the_limit_is_sagemakers_timeout(tiny_server, phone_photo: tuple[Path, list],  # type: ignore[no-untyped-def, type-arg]
                                                          tmp_path: Path) -> None:
    path, clicks = phone_photo
    for url in _plane(tiny_server, tmp_path / "plane.log", "--invocation-timeout-s", "0.05"):
        result = _cli(url, "--test-image", str(path), "--points", _points(clicks), "--out-dir", str(tmp_path / "out"),
                      home=tmp_path / "home")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "error: endpoint error 424 ModelError: Your invocation timed out while waiting for a response from " \
               "container primary." in result.stderr
