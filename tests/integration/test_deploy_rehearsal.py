"""Deployment rehearsed locally: moto_server (control plane) + our server behind the data-plane stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.integration.server import REPO, free_port

BUCKET = "sam-rehearsal-bucket"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _wait_http(url: str, process: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def aws(tiny_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """A moto server with a bucket and the execution role, and the data plane in front of our server."""
    logs = tmp_path_factory.mktemp("aws")
    bin_dir = Path(sys.executable).parent
    moto_port, plane_port = free_port(), free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": moto_url}
    moto = subprocess.Popen([str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=(logs / "moto.log").open("wb"), stderr=subprocess.STDOUT, env=env)
    plane = subprocess.Popen([sys.executable, "-m", "rehearsal.data_plane", "--container-url", tiny_server.url,
                              "--port", str(plane_port)], cwd=REPO, env=env,
                             stdout=(logs / "plane.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        _wait_http(moto_url, moto)
        _wait_http(f"http://127.0.0.1:{plane_port}/", plane)
        session = boto3.session.Session(**{k.lower(): v for k, v in CREDENTIALS.items() if k != "AWS_DEFAULT_REGION"},
                                        region_name="us-east-1")
        session.client("s3", endpoint_url=moto_url).create_bucket(Bucket=BUCKET)
        session.client("iam", endpoint_url=moto_url).create_role(
            RoleName="SageMakerExecutionRole", AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')
        yield {**CREDENTIALS, "AWS_ENDPOINT_URL": moto_url,
               "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://127.0.0.1:{plane_port}"}
    finally:
        for process in (plane, moto):
            process.terminate()
            process.wait(10)


def _client(aws: dict[str, str], service: str) -> Any:
    return boto3.client(service, endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _deploy(aws: dict[str, str], tmp_path: Path, model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **aws, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    settings = [f"S3_BUCKET={BUCKET}", f"MODEL_DIR={model_dir}", "IMAGE_URI=123456789012.dkr.ecr.us-east-1.amazonaws.com/sam:cpu",
                "POLL_S=1", f"PYTHON={sys.executable}", f"STATE_DIR={tmp_path / 'state'}", f"ARTIFACTS_DIR={tmp_path / 'artifacts'}"]
    return subprocess.run(["bash", str(REPO / "deploy_to_sagemaker.sh"), "--env-file", str(tmp_path / "none.env"),
                           *settings, *args], capture_output=True, text=True, env=env, timeout=600, check=False)


def _nothing_left(aws: dict[str, str]) -> None:
    sagemaker = _client(aws, "sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []
    scaling = _client(aws, "application-autoscaling")
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []


def test_realtime_deployment_rehearsal(aws: dict[str, str], tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test passed" in result.stderr
    s3, sagemaker = _client(aws, "s3"), _client(aws, "sagemaker")
    assert s3.head_object(Bucket=BUCKET, Key="sam-climbing/model.tar.gz")["Metadata"]["sha256"]
    endpoint = sagemaker.describe_endpoint(EndpointName="sam-climbing-endpoint")
    assert endpoint["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["VariantName"] == "Primary" and variant["InstanceType"] == "ml.g4dn.xlarge"
    assert variant["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-2-1"  # driver 535 runs the CUDA 12 image
    assert "AsyncInferenceConfig" not in config
    assert "ml.g4dn.xlarge: CUDA 12 image, InferenceAmiVersion al2-ami-sagemaker-inference-gpu-2-1 (driver 535)" in result.stderr
    policies = _client(aws, "application-autoscaling").describe_scaling_policies(ServiceNamespace="sagemaker")
    tracking = policies["ScalingPolicies"][0]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"
    again = _deploy(aws, tmp_path, tiny_model_dir, "package")
    assert "unchanged, already at" in again.stdout

    update = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", "model", "config", "endpoint")
    assert update.returncode == 0, update.stderr
    lines = update.stdout.splitlines()
    new_config = next(line for line in lines if "create-endpoint-config" in line).split("--endpoint-config-name ")[1].split()[0]
    assert any("update-endpoint" in line and new_config in line for line in lines)
    assert len(sagemaker.list_models()["Models"]) == 1  # dry run changed nothing

    deleted = _deploy(aws, tmp_path, tiny_model_dir, "delete")
    assert deleted.returncode == 0, deleted.stderr
    _nothing_left(aws)


def test_async_deployment_rehearsal(aws: dict[str, str], tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, "--mode", "async", "INSTANCE_TYPE=ml.m5.xlarge", "all")
    assert result.returncode == 0, result.stdout + result.stderr
    sagemaker, s3 = _client(aws, "sagemaker"), _client(aws, "s3")
    endpoint = sagemaker.describe_endpoint(EndpointName="sam-climbing-endpoint")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["AsyncInferenceConfig"]["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == 2
    assert "InferenceAmiVersion" not in config["ProductionVariants"][0]  # a CPU instance type has no GPU driver
    outputs = s3.list_objects_v2(Bucket=BUCKET, Prefix="sam-climbing/async/output/").get("Contents", [])
    requests = s3.list_objects_v2(Bucket=BUCKET, Prefix="requests/").get("Contents", [])
    assert outputs and requests
    target = _client(aws, "application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")
    assert target["ScalableTargets"][0]["MinCapacity"] == 0
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["Environment"]["SAM_MAX_BODY_BYTES"] == "256MiB"
    assert model["PrimaryContainer"]["Environment"]["SAM_CACHE_BYTES"] == "4096MiB"  # a quarter of ml.m5.xlarge's 16 GiB
    deleted = _deploy(aws, tmp_path, tiny_model_dir, "delete")
    assert deleted.returncode == 0, deleted.stderr
    _nothing_left(aws)


@pytest.mark.parametrize("instance_type,cache", [
    ("ml.m5.large", "2048MiB"), ("ml.c7i.large", "1024MiB"), ("ml.c7i.4xlarge", "8192MiB"),
    ("ml.m5.24xlarge", "8192MiB"), ("ml.g4dn.xlarge", "4096MiB"), ("ml.t2.medium", "1GiB"), ("ml.p9.unknown", "2GiB"),
])
def test_cache_budget_follows_the_instance_memory(aws: dict[str, str], tiny_model_dir: Path, tmp_path: Path,
                                                  instance_type: str, cache: str) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", f"INSTANCE_TYPE={instance_type}", "model")
    assert result.returncode == 0, result.stderr
    create = next(line for line in result.stdout.splitlines() if "create-model" in line)
    assert f'SAM_CACHE_BYTES\\":\\"{cache}\\"' in create or f'"SAM_CACHE_BYTES":"{cache}"' in create, create


def test_dry_run_builds_the_cuda_12_image_for_g4dn_and_picks_its_ami(aws: dict[str, str], tiny_model_dir: Path,
                                                                     tmp_path: Path) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", "IMAGE_URI=", "INSTANCE_TYPE=ml.g4dn.xlarge",
                     "image", "model", "config")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    build = next(line for line in lines if line.startswith("DRY-RUN: docker build"))
    assert "--build-arg VARIANT=gpu --build-arg CUDA_MAJOR=12" in build and "/sam-climbing:gpu-cu12-" in build
    config = next(line for line in lines if "create-endpoint-config" in line)
    assert '\\"InferenceAmiVersion\\":\\"al2-ami-sagemaker-inference-gpu-2-1\\"' in config, config
    create_model = next(line for line in lines if "create-model" in line)
    assert "/sam-climbing:gpu-cu12-" in create_model  # the model runs the image that step built

    cuda13 = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", "IMAGE_URI=", "CUDA_MAJOR=13", "image", "model", "config")
    assert cuda13.returncode == 0, cuda13.stderr
    assert "--build-arg CUDA_MAJOR=13" in cuda13.stdout and ":gpu-cu13-" in cuda13.stdout
    assert '\\"InferenceAmiVersion\\":\\"al2023-ami-sagemaker-inference-gpu-4-1\\"' in cuda13.stdout


@pytest.mark.parametrize("settings,message", [
    (["CUDA_MAJOR=13", "INFERENCE_AMI_VERSION=al2-ami-sagemaker-inference-gpu-3-1"],
     ("the CUDA 13 image cannot start on ml.g4dn.xlarge with InferenceAmiVersion al2-ami-sagemaker-inference-gpu-3-1 "
      "(driver 550): it needs driver 580 or newer")),
    (["CUDA_MAJOR=13", "INFERENCE_AMI_VERSION=al2-ami-sagemaker-inference-gpu-2-1"], "(driver 535): it needs driver 580"),
    (["INFERENCE_AMI_VERSION=none"], "with InferenceAmiVersion none (driver 470): it needs driver 535 or newer"),
    (["INFERENCE_AMI_VERSION=al2-ami-sagemaker-inference-gpu-9"], "unknown NVIDIA driver for InferenceAmiVersion"),
    (["IMAGE_URI=123456789012.dkr.ecr.us-east-1.amazonaws.com/sam-climbing:gpu-cu13-abc1234"],
     "is a CUDA 13 image but CUDA_MAJOR=12"),
    (["INSTANCE_TYPE=ml.m5.large", "INFERENCE_AMI_VERSION=al2-ami-sagemaker-inference-gpu-2-1"],
     "is for GPU instance types, not ml.m5.large"),
    (["INSTANCE_TYPE=ml.inf2.xlarge"], "not NVIDIA GPUs"),
    (["CUDA_MAJOR=11"], "CUDA_MAJOR must be 12 or 13"),
])
def test_check_refuses_an_image_its_host_driver_cannot_start(aws: dict[str, str], tiny_model_dir: Path, tmp_path: Path,
                                                             settings: list[str], message: str) -> None:
    for command in ("check", "config"):
        result = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", *settings, command)
        assert result.returncode == 1 and message in result.stderr, (command, result.stderr)
        assert "DRY-RUN" not in result.stdout


@pytest.mark.parametrize("settings,summary", [
    ([], "ml.g4dn.xlarge: CUDA 12 image, InferenceAmiVersion al2-ami-sagemaker-inference-gpu-2-1 (driver 535)"),
    (["INFERENCE_AMI_VERSION=al2-ami-sagemaker-inference-gpu-3-1"], "InferenceAmiVersion al2-ami-sagemaker-inference-gpu-3-1 (driver 550)"),
    (["CUDA_MAJOR=13"], "CUDA 13 image, InferenceAmiVersion al2023-ami-sagemaker-inference-gpu-4-1 (driver 580)"),
    (["IMAGE_URI=123456789012.dkr.ecr.us-east-1.amazonaws.com/sam-climbing:gpu-cu13-abc1234", "CUDA_MAJOR=13"], "(driver 580)"),
    (["INSTANCE_TYPE=ml.m5.large"], "ml.m5.large: CPU image"),
])
def test_check_accepts_an_image_its_host_driver_runs(aws: dict[str, str], tiny_model_dir: Path, tmp_path: Path,
                                                     settings: list[str], summary: str) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, *settings, "check")
    assert result.returncode == 0 and "check passed" in result.stderr and summary in result.stderr, result.stderr


def test_missing_bucket_setting_is_a_clear_error(aws: dict[str, str], tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, **aws, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO / "deploy_to_sagemaker.sh"), "--env-file", str(tmp_path / "none.env"),
                             f"MODEL_DIR={tiny_model_dir}", "IMAGE_URI=x", "check"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 1 and "S3_BUCKET is not set" in result.stderr
    bad_mode = _deploy(aws, tmp_path, tiny_model_dir, "--mode", "batch", "status")
    assert bad_mode.returncode == 1 and "DEPLOY_MODE must be realtime or async" in bad_mode.stderr


def test_shellcheck_is_clean() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    result = subprocess.run([str(shellcheck), str(REPO / "deploy_to_sagemaker.sh")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout
