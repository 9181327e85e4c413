"""Batch transform rehearsed end to end: `deploy_to_sagemaker.sh batch` over request files in moto's S3,
the control plane running the job with a real container on the packaged model, every output
compared with the in-process answer, and SageMaker's per-record failure behaviour for bad inputs."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from botocore.exceptions import ClientError

from holds_client import Outputs, request_file
from holds_client.prompts import RequestFormat
from synthetic.wall_photo import wall_photo
from tests.integration.rehearsal_stack import BUCKET, Rehearsal, rehearsal
from tests.reference import decode_mask, in_process_mask

LOG_GROUP = "/aws/sagemaker/TransformJobs"


@dataclass(frozen=True)
class Request:
    """One request file: its S3 key, the photo and the prompt it carries."""

    key: str
    photo: bytes
    points: list[tuple[float, float]]
    labels: list[int] | None


@pytest.fixture(scope="module")
def stack(tiny_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:  # type: ignore[no-untyped-def]
    with rehearsal(tmp_path_factory.mktemp("batch"), tiny_server.url) as running:
        yield running


def _photo_requests(prefix: str, count: int, fmt: str) -> list[Request]:
    """``count`` photos of several sizes and orientations, 1 to 3 clicks, some with a background click."""
    requests = []
    for index in range(count):
        photo = wall_photo(240 + 40 * (index % 5), 200 + 30 * (index % 4), holds=6, seed=100 + index,
                           orientation=6 if index % 3 == 0 else 1)
        points = photo.clicks(1 + index % 3)
        labels = [1] * (len(points) - 1) + [0] if len(points) > 1 and index % 4 == 0 else None
        folder = "day2/" if index % 5 == 4 else ""  # a sub-folder keeps its place below the output prefix
        requests.append(Request(f"{prefix}{folder}wall-{index:02d}.{fmt}", photo.jpeg, points, labels))
    return requests


def _upload(stack: Rehearsal, requests: list[Request], fmt: RequestFormat) -> None:
    s3 = stack.client("s3")
    for request in requests:
        body, _ = request_file(request.photo, request.points, request.labels, outputs=Outputs(mask_format="png"),
                               fmt=fmt)
        s3.put_object(Bucket=BUCKET, Key=request.key, Body=body)


def _mask_of(output: bytes, fmt: str) -> np.ndarray:
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(output)) as archive:
            assert {"result_image.bin", "mask_image.bin", "metadata.json"} <= set(archive.namelist())
            return decode_mask(archive.read("mask_image.bin"))
    return decode_mask(json.loads(output)["mask_image_base64"])


def _check_outputs(stack: Rehearsal, model_dir: Path, requests: list[Request], in_prefix: str, out_prefix: str,
                   fmt: str) -> None:
    s3 = stack.client("s3")
    for request in requests:
        key = out_prefix + request.key[len(in_prefix):] + ".out"
        output = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        want = in_process_mask(model_dir, request.photo, request.points, request.labels)
        assert np.array_equal(_mask_of(output, fmt), want), key


def _data_log(stack: Rehearsal, job: str) -> list[str]:
    logs = stack.client("logs")
    streams = [s["logStreamName"] for s in
               logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job}/")["logStreams"]]
    assert streams == [f"{job}/rehearsal-0/data-log"]
    events = logs.filter_log_events(logGroupName=LOG_GROUP, logStreamNames=streams)["events"]
    return [event["message"].split("[sagemaker logs]: ", 1)[1] for event in events]


def test_a_batch_of_photos_with_bad_records(stack: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    """22 photos and 2 bad files: every photo's .out equals the in-process answer; the bad files get no
    .out, the job ends Failed with SageMaker's reason, and the report names them and their errors."""
    requests = _photo_requests("batch/input/", 22, "zip")
    _upload(stack, requests, "zip")
    s3 = stack.client("s3")
    s3.put_object(Bucket=BUCKET, Key="batch/input/bad-1.zip", Body=b"this is not a zip archive")
    s3.put_object(Bucket=BUCKET, Key="batch/input/day2/bad-2.zip",  # a point outside the photo
                  Body=request_file(requests[0].photo, [(5000.0, 5.0)], fmt="zip")[0])

    result = stack.deploy(tmp_path, tiny_model_dir, "package", "batch", f"s3://{BUCKET}/batch/input",
                          f"s3://{BUCKET}/batch/output/")
    assert result.returncode == 1, result.stderr
    job = result.stderr.split("transform job ", 1)[1].split(":", 1)[0]
    assert f"error: transform job {job} is Failed: ClientError: See job logs for more details." in result.stderr
    assert "22 of 24 request files answered" in result.stderr
    assert "no answer for: batch/input/bad-1.zip batch/input/day2/bad-2.zip" in result.stderr
    assert f"{BUCKET}/batch/input/bad-1.zip: ClientError: 400" in result.stderr
    assert "the body is not a valid zip archive" in result.stderr and "invalid_points" in result.stderr
    _check_outputs(stack, tiny_model_dir, requests, "batch/input/", "batch/output/", "zip")
    outputs = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/output/")["Contents"]}
    assert len(outputs) == 22 and not any("bad" in key for key in outputs)

    sagemaker = stack.client("sagemaker")
    described = sagemaker.describe_transform_job(TransformJobName=job)
    assert described["TransformJobStatus"] == "Failed"
    assert described["FailureReason"] == "ClientError: See job logs for more details."
    assert (described["MaxConcurrentTransforms"], described["MaxPayloadInMB"], described["BatchStrategy"]) == (4, 25, "SingleRecord")
    assert described["TransformInput"]["ContentType"] == "application/zip" and described["TransformInput"]["SplitType"] == "None"
    assert described["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/batch/input/"
    assert described["TransformResources"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1,
                                               "TransformAmiVersion": "al2-ami-sagemaker-batch-gpu-535"}
    assert described["ModelClientConfig"] == {"InvocationsTimeoutInSeconds": 300, "InvocationsMaxRetries": 1}
    environment = sagemaker.describe_model(ModelName=described["ModelName"])["PrimaryContainer"]["Environment"]
    assert environment["SAM_MAX_BODY_BYTES"] == "25MiB"  # the container takes what MaxPayloadInMB lets through
    assert environment["SAM_REQUEST_TIMEOUT_S"] == "295"
    log = _data_log(stack, job)
    assert log[0] == "MaxConcurrentTransforms=4, MaxPayloadInMB=25, BatchStrategy=SINGLE_RECORD"
    assert f"{BUCKET}/batch/input/day2/bad-2.zip: ClientError: 400" in log


def test_json_requests_complete(stack: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    requests = _photo_requests("json/input/", 3, "json")
    _upload(stack, requests, "json")
    result = stack.deploy(tmp_path, tiny_model_dir, "package", "batch", f"s3://{BUCKET}/json/input/",
                          f"s3://{BUCKET}/json/output/", "BATCH_INSTANCE_TYPE=ml.m5.large")
    assert result.returncode == 0, result.stderr
    assert "Completed: all 3 request files answered" in result.stderr
    assert "(application/json)" in result.stderr and "TransformAmiVersion" not in result.stderr
    _check_outputs(stack, tiny_model_dir, requests, "json/input/", "json/output/", "json")


def test_the_containers_execution_parameters_fill_what_the_job_leaves_out(stack: Rehearsal, tiny_model_dir: Path,
                                                                          tmp_path: Path) -> None:
    """A job without MaxConcurrentTransforms / MaxPayloadInMB / BatchStrategy runs with the container's
    /execution-parameters (its body limit and threads); a record over MaxPayloadInMB fails alone."""
    packaged = stack.deploy(tmp_path, tiny_model_dir, "package")
    assert packaged.returncode == 0, packaged.stderr
    requests = _photo_requests("params/input/", 2, "zip")
    _upload(stack, requests, "zip")
    stack.client("s3").put_object(Bucket=BUCKET, Key="params/input/huge.zip", Body=b"\0" * (11 << 20))
    sagemaker = stack.client("sagemaker")
    sagemaker.create_model(ModelName="params-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerExecutionRole",
                           PrimaryContainer={"Image": "local:cpu", "ModelDataUrl": f"s3://{BUCKET}/sam-climbing/model.tar.gz",
                                             "Environment": {"SAM_MAX_BODY_BYTES": "10MiB", "SAM_WORKER_THREADS": "3"}})
    sagemaker.create_transform_job(
        TransformJobName="params-job", ModelName="params-model",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/params/input/"}},
                        "ContentType": "application/zip"},
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/params/output/"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    assert sagemaker.describe_transform_job(TransformJobName="params-job")["TransformJobStatus"] == "InProgress"
    _wait(stack, "params-job")
    described = sagemaker.describe_transform_job(TransformJobName="params-job")
    assert described["TransformJobStatus"] == "Failed", described
    log = _data_log(stack, "params-job")
    assert log[0] == "MaxConcurrentTransforms=3, MaxPayloadInMB=10, BatchStrategy=SINGLE_RECORD"
    assert f"{BUCKET}/params/input/huge.zip: ClientError: 413" in log
    _check_outputs(stack, tiny_model_dir, requests, "params/input/", "params/output/", "zip")


def _wait(stack: Rehearsal, job: str) -> None:
    sagemaker = stack.client("sagemaker")
    deadline = time.monotonic() + 300
    while sagemaker.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, f"{job} still InProgress"
        time.sleep(0.5)


@pytest.mark.parametrize("job,message", [
    ({"MaxPayloadInMB": 101}, "MaxPayloadInMB 101 is over the maximum of 100 MB."),
    ({"MaxPayloadInMB": 30, "MaxConcurrentTransforms": 4}, "must not exceed 100 MB"),
    ({"ModelName": "no-such-model"}, "Could not find model"),
])
def test_create_transform_job_is_refused_as_sagemaker_refuses_it(stack: Rehearsal, job: dict[str, object],
                                                                 message: str) -> None:
    sagemaker = stack.client("sagemaker")
    try:
        sagemaker.create_model(ModelName="any-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerExecutionRole",
                               PrimaryContainer={"Image": "local:cpu", "ModelDataUrl": f"s3://{BUCKET}/x.tar.gz"})
    except ClientError:
        pass  # made by an earlier case
    request = {"TransformJobName": "refused", "ModelName": "any-model",
               "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/in/"}}},
               "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/out/"},
               "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1}, **job}
    with pytest.raises(ClientError) as refused:
        sagemaker.create_transform_job(**request)
    assert refused.value.response["Error"]["Code"] == "ValidationException" and message in str(refused.value)


def test_batch_refuses_what_sagemaker_would_fail(stack: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    s3 = stack.client("s3")
    s3.put_object(Bucket=BUCKET, Key="mixed/a.zip", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="mixed/b.json", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="big/a.zip", Body=b"\0" * (3 << 20))
    s3.put_object(Bucket=BUCKET, Key="fine/a.zip", Body=b"x")
    cases = [
        (["batch", f"s3://{BUCKET}/mixed/", f"s3://{BUCKET}/out/"], "must all be .zip or all .json"),
        (["BATCH_MAX_PAYLOAD_MB=2", "batch", f"s3://{BUCKET}/big/", f"s3://{BUCKET}/out/"],
         "request files over BATCH_MAX_PAYLOAD_MB=2 MiB (SageMaker would fail them): big/a.zip (3145728 bytes)"),
        (["BATCH_MAX_PAYLOAD_MB=101", "batch", f"s3://{BUCKET}/fine/", f"s3://{BUCKET}/out/"], "must be 1 to 100"),
        (["BATCH_MAX_PAYLOAD_MB=30", "batch", f"s3://{BUCKET}/fine/", f"s3://{BUCKET}/out/"],
         "BATCH_MAX_CONCURRENT x BATCH_MAX_PAYLOAD_MB is 120 MB; SageMaker allows 100"),
        (["batch", f"s3://{BUCKET}/empty/", f"s3://{BUCKET}/out/"], "no request files under s3://"),
        (["batch", f"s3://{BUCKET}/fine/", f"s3://{BUCKET}/fine/out/"], "must not overlap the input prefix"),
        (["CUDA_MAJOR=13", "IMAGE_URI=", "batch", f"s3://{BUCKET}/fine/", f"s3://{BUCKET}/out/"],
         "the CUDA 13 image cannot run a batch transform"),
        (["S3_KEY=not/packaged.tar.gz", "batch", f"s3://{BUCKET}/fine/", f"s3://{BUCKET}/out/"],
         "no model archive at s3://sam-rehearsal-bucket/not/packaged.tar.gz: run 'package' first"),
    ]
    for args, message in cases:
        result = stack.deploy(tmp_path, tiny_model_dir, *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    planned = stack.deploy(tmp_path, tiny_model_dir, "--dry-run", "BATCH_INSTANCE_TYPE=ml.m5.large", "batch",
                           f"s3://{BUCKET}/fine/", f"s3://{BUCKET}/fine-out/")
    assert planned.returncode == 0, planned.stderr
    transform = next(line for line in planned.stdout.splitlines() if "create-transform-job" in line)
    assert "--max-payload-in-mb 25" in transform and "--batch-strategy SingleRecord" in transform
    assert "InstanceType=ml.m5.large" in transform and "TransformAmiVersion" not in transform
    model = next(line for line in planned.stdout.splitlines() if "create-model" in line)
    assert '\\"SAM_MAX_BODY_BYTES\\":\\"25MiB\\"' in model


def test_the_container_answers_execution_parameters(tiny_server) -> None:  # type: ignore[no-untyped-def]
    answer = httpx.get(tiny_server.url + "/execution-parameters", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"MaxConcurrentTransforms": 8, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 6}
