"""Pre-warming end to end in the rehearsal (issue 28, part 3): `deploy_to_sagemaker.sh batch --warm`
over a folder of photos in moto's S3, the control plane's transform job running a real container
(SAM_WARM_REQUESTS from the job's Environment) against a real redis-server; then a second server
instance (its own empty cache, the same store) answers a tap by image_id from the shared tier without
running its encoder, with the mask computed directly in process."""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
import redis
from botocore.exceptions import ClientError

from synthetic.wall_photo import wall_photo
from tests.integration.rehearsal_stack import BUCKET, Rehearsal, rehearsal
from tests.integration.server import REPO, LocalEndpoint, start_server
from tests.integration.test_readme_examples import block_with, command_starting
from tests.redis_server import redis_server
from tests.reference import decode_mask, in_process_mask

NETWORK = ["VPC_SUBNET_IDS=subnet-0a1b2c3d", "VPC_SECURITY_GROUP_IDS=sg-0a1b2c3d", "BATCH_INSTANCE_TYPE=ml.m5.large"]


@pytest.fixture(scope="module")
def store() -> Iterator[str]:
    with redis_server() as (_, url):
        yield url


@pytest.fixture(scope="module")
def second(tiny_model_dir: Path, store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    """The instance that never saw the photos: same model, same store, its own (empty) cache."""
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("second") / "server.log",
                           {"SAM_SHARED_CACHE_URL": store, "SAM_SHARED_CACHE_COMMAND_TIMEOUT_MS": "2000"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stack(second: LocalEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    with rehearsal(tmp_path_factory.mktemp("warm-rehearsal"), second.url) as running:
        yield running


def _guide_arguments() -> list[str]:
    """README_SAGEMAKER.md section 11's `batch --warm` command line (after the script, before the pipe)."""
    block = block_with(REPO / "README_SAGEMAKER.md", "bash", "batch --warm")
    command = command_starting(block, "./deploy_to_sagemaker.sh").split("|")[0]
    return [arg.replace("my-climbing-bucket", BUCKET) for arg in shlex.split(command)[1:]]


def _warm(stack: Rehearsal, tmp_path: Path, model_dir: Path, store: str, arguments: list[str]) -> dict[str, Any]:
    result = stack.deploy(tmp_path, model_dir, *arguments, f"SHARED_CACHE_URL={store}", *NETWORK)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    assert f"warm job {report['job']}: 3 photos" in result.stderr
    return report


def _stats(server: LocalEndpoint) -> dict[str, Any]:
    return httpx.get(server.url + "/stats", timeout=10).json()  # type: ignore[no-any-return]


def test_a_warmed_folder_is_answered_by_another_instance_without_encoding(
        stack: Rehearsal, second: LocalEndpoint, store: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    photos = {f"wall/photos/wall-{i}.jpg": wall_photo(320 + 40 * i, 260, holds=6, seed=280 + i, orientation=6 - 5 * i)
              for i in range(2)}
    s3 = stack.client("s3")
    for key, photo in photos.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=photo.jpeg)
    s3.put_object(Bucket=BUCKET, Key="wall/photos/broken.jpg", Body=b"\xff\xd8\xff this is no JPEG")
    runs_before = _stats(second)["encoder_runs"]

    arguments = _guide_arguments()
    assert arguments == ["package", "batch", "--warm", f"s3://{BUCKET}/wall/photos/", f"s3://{BUCKET}/wall/warmed/"]
    report = _warm(stack, tmp_path, tiny_model_dir, store, arguments)
    lines = {line["key"]: line for line in report["photos"]}
    assert [lines[key]["outcome"] for key in sorted(lines)] == ["refused", "stored", "stored"]
    assert (lines["wall/photos/broken.jpg"]["reason"], lines["wall/photos/broken.jpg"]["status"]) == ("invalid_image", 400)
    raw = redis.Redis.from_url(store)
    sizes = [raw.strlen(raw.keys(f"sam:emb:*:{lines[key]['image_id']}")[0]) for key in photos]
    assert report["totals"] == {"photos": 3, "stored": 2, "already_present": 0, "refused": {"invalid_image": 1},
                                "stored_bytes": sum(sizes)}
    described = stack.client("sagemaker").describe_transform_job(TransformJobName=report["job"])
    assert described["TransformJobStatus"] == "Completed" and described["Environment"] == {"SAM_WARM_REQUESTS": "true"}
    assert described["TransformInput"]["ContentType"] == "image/jpeg"

    for key, photo in photos.items():  # a tap by image_id on the instance that never saw the photo
        points = photo.clicks(2)
        tap = httpx.post(second.url + "/invocations", timeout=60, headers={"Content-Type": "application/json"},
                         content=json.dumps({"image_id": lines[key]["image_id"],
                                             "points": [{"x": x, "y": y} for x, y in points]}).encode())
        assert tap.status_code == 200, tap.text
        assert np.array_equal(decode_mask(tap.json()["mask_image_base64"]),
                              in_process_mask(tiny_model_dir, photo.jpeg, points)), key
        assert tap.json()["cache_hit"] and "encoder_ms" not in tap.json()["timings_ms"]
    stats = _stats(second)
    assert stats["encoder_runs"] == runs_before and stats["shared_cache"]["hits"] == 2

    again = _warm(stack, tmp_path, tiny_model_dir, store, arguments[1:])  # the same folder: nothing new to store
    assert again["totals"] == {"photos": 3, "stored": 0, "already_present": 2, "refused": {"invalid_image": 1},
                               "stored_bytes": 0}


def test_warm_without_a_shared_tier_is_refused_before_any_job(stack: Rehearsal, tiny_model_dir: Path,
                                                              tmp_path: Path) -> None:
    stack.calls(clear=True)
    result = stack.deploy(tmp_path, tiny_model_dir, "batch", "--warm", f"s3://{BUCKET}/wall/photos/",
                          f"s3://{BUCKET}/wall/none/")
    assert result.returncode == 1 and "batch --warm fills the shared embedding tier" in result.stderr
    assert not [c for c in stack.calls() if c.get("operation") in ("CreateModel", "CreateTransformJob")]


def test_an_asynchronous_warm_request_writes_its_line_to_s3(stack: Rehearsal, store: str) -> None:
    """InvokeEndpointAsync with CustomAttributes warm=true through the data plane: the line lands at the
    OutputLocation, and the store holds what it says."""
    sagemaker = stack.client("sagemaker")
    sagemaker.create_model(ModelName="warm-async-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
                           PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sam:cpu"})
    sagemaker.create_endpoint_config(
        EndpointConfigName="warm-async-config",
        ProductionVariants=[{"VariantName": "Primary", "ModelName": "warm-async-model", "InitialInstanceCount": 1,
                             "InstanceType": "ml.c5.xlarge", "InitialVariantWeight": 1.0}],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/async/out"}})
    sagemaker.create_endpoint(EndpointName="warm-async", EndpointConfigName="warm-async-config")
    photo = wall_photo(300, 400, holds=5, seed=290, orientation=1).jpeg
    stack.client("s3").put_object(Bucket=BUCKET, Key="async/in/wall.jpg", Body=photo)
    runtime = boto3.client("sagemaker-runtime", endpoint_url=stack.plane_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    answer = runtime.invoke_endpoint_async(EndpointName="warm-async", InputLocation=f"s3://{BUCKET}/async/in/wall.jpg",
                                           ContentType="image/jpeg", CustomAttributes="warm=true")
    key = answer["OutputLocation"].split(f"s3://{BUCKET}/", 1)[1]
    deadline = time.monotonic() + 120
    while True:
        try:
            line = json.loads(stack.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read())
            break
        except ClientError:
            assert time.monotonic() < deadline, f"no answer at {answer['OutputLocation']}"
            time.sleep(0.2)
    assert line["outcome"] == "stored" and line["image_id"] == hashlib.sha256(photo).hexdigest()[:32]
    raw = redis.Redis.from_url(store)
    assert raw.strlen(raw.keys(f"sam:emb:*:{line['image_id']}")[0]) == line["stored_bytes"]
