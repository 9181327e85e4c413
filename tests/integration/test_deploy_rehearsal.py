"""Deployment rehearsed locally: moto_server (control plane) + our server behind the data-plane stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from synthetic.wall_photo import wall_photo
from tests.integration.rehearsal_stack import BUCKET, Rehearsal, nothing_left, rehearsal
from tests.integration.server import REPO


@pytest.fixture(scope="module")
def aws(tiny_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:  # type: ignore[no-untyped-def]
    """moto behind the control-plane stand-in (UpdateEndpoint, call log), a bucket and the execution
    role, and the data-plane stand-in (SageMaker's real-time limits) in front of our server."""
    with rehearsal(tmp_path_factory.mktemp("aws"), tiny_server.url) as stack:
        yield stack


def _client(aws: Rehearsal, service: str) -> Any:
    return aws.client(service)


def _deploy(aws: Rehearsal, tmp_path: Path, model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return aws.deploy(tmp_path, model_dir, *args)


def _nothing_left(aws: Rehearsal) -> None:
    nothing_left(aws)


def test_realtime_deployment_rehearsal(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, "all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test passed" in result.stderr
    tested = Image.open(tmp_path / "state" / "test-output" / "mask.png")
    assert tested.size == (3024, 4032)  # `test` sends a 12 MP photo through SageMaker's 6 MiB limits
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

    _update_keeps_capacity_and_autoscaling(aws, tmp_path, tiny_model_dir)
    _failed_update_rolls_back_and_keeps_autoscaling(aws, tmp_path, tiny_model_dir)
    deleted = _deploy(aws, tmp_path, tiny_model_dir, "delete")
    assert deleted.returncode == 0, deleted.stderr
    _nothing_left(aws)


def _calls(aws: Rehearsal, clear: bool = False) -> list[dict[str, Any]]:
    return aws.calls(clear)


#: AWS's order for an endpoint with autoscaling: policies and target off, update, wait, back on.
UPDATE_SEQUENCE = [
    "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
    "application-autoscaling:DeleteScalingPolicy", "monitoring:DeleteAlarms",
    "application-autoscaling:DeregisterScalableTarget", "sagemaker:UpdateEndpoint",
    "application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
]


def _update_keeps_capacity_and_autoscaling(aws: Rehearsal, tmp_path: Path, model_dir: Path) -> None:
    """The update path, for real through the AWS CLI: a scaled-out, autoscaled variant moves to
    another instance type (the cost table's GPU -> CPU move) and keeps its instance count."""
    sagemaker, scaling = _client(aws, "sagemaker"), _client(aws, "application-autoscaling")
    sagemaker.update_endpoint_weights_and_capacities(  # what autoscaling did under load
        EndpointName="sam-climbing-endpoint", DesiredWeightsAndCapacities=[{"VariantName": "Primary", "DesiredInstanceCount": 2}])
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName="sam-climbing-endpoint",
                                                     WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    _calls(aws, clear=True)
    updated = _deploy(aws, tmp_path, model_dir, "INSTANCE_TYPE=ml.m5.xlarge", "model", "config", "endpoint", "autoscale")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    calls = _calls(aws)
    changes = [f"{c['service']}:{c['operation']}" for c in calls
               if not c["operation"].startswith(("Describe", "List", "Get", "Head"))]
    assert changes == UPDATE_SEQUENCE, changes
    update_at = next(i for i, c in enumerate(calls) if c["operation"] == "UpdateEndpoint")
    register_at = next(i for i, c in enumerate(calls) if c["operation"] == "RegisterScalableTarget")
    waited = [c["endpoint_status"] for c in calls[update_at:register_at] if c["operation"] == "DescribeEndpoint"]
    assert waited[0] == "Updating" and waited[-1] == "InService", waited  # re-registered only once in service
    assert all(c["status"] == 200 for c in calls), [c for c in calls if c["status"] != 200]
    endpoint = sagemaker.describe_endpoint(EndpointName="sam-climbing-endpoint")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    assert endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 2  # not reset to InitialInstanceCount 1
    target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in target] == [
        ("endpoint/sam-climbing-endpoint/variant/Primary", 1, 2)]
    assert len(scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]) == 1
    assert "registered again after the update" in updated.stderr  # `autoscale` did not register twice


#: SageMaker's reason when a new container never answers /ping (the update then rolls back).
PING_FAILURE = ("The primary container for production variant Primary did not pass the ping health check. "
                "Please check CloudWatch logs for this endpoint.")


def _failed_update_rolls_back_and_keeps_autoscaling(aws: Rehearsal, tmp_path: Path, model_dir: Path) -> None:
    """An update whose deployment fails comes back InService on the previous config (no RollingBack
    status for UpdateEndpoint): the script must call that a failure, say why, and register the
    scaling it removed again for the variant that keeps serving."""
    sagemaker, scaling = _client(aws, "sagemaker"), _client(aws, "application-autoscaling")
    before = sagemaker.describe_endpoint(EndpointName="sam-climbing-endpoint")
    httpx.post(aws.control_url + "/_rehearsal/faults", timeout=10, json={
        "operation": "UpdateEndpoint", "deployment_failure": PING_FAILURE, "count": 1})
    _calls(aws, clear=True)
    failed = _deploy(aws, tmp_path, model_dir, "INSTANCE_TYPE=ml.m5.large", "model", "config", "endpoint", "autoscale")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert (f"endpoint sam-climbing-endpoint is rolled back to its previous config ({before['EndpointConfigName']}): "
            f"{PING_FAILURE}") in failed.stderr
    assert "did not reach InService" in failed.stderr.splitlines()[-1]
    changes = [f"{c['service']}:{c['operation']}" for c in _calls(aws)
               if not c["operation"].startswith(("Describe", "List", "Get", "Head"))]
    assert changes == UPDATE_SEQUENCE, changes  # scaling back on for the old variant, and nothing after
    after = sagemaker.describe_endpoint(EndpointName="sam-climbing-endpoint")
    assert after["EndpointStatus"] == "InService" and after["FailureReason"] == PING_FAILURE
    assert after["EndpointConfigName"] == before["EndpointConfigName"]
    assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    config = sagemaker.describe_endpoint_config(EndpointConfigName=after["EndpointConfigName"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in target] == [
        ("endpoint/sam-climbing-endpoint/variant/Primary", 1, 2)]
    assert len(scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]) == 1


def test_async_deployment_rehearsal(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
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
    _async_client_honours_every_option(aws, tmp_path, tiny_model_dir)
    deleted = _deploy(aws, tmp_path, tiny_model_dir, "delete")
    assert deleted.returncode == 0, deleted.stderr
    _nothing_left(aws)


def _async_client_honours_every_option(aws: Rehearsal, tmp_path: Path, model_dir: Path) -> None:
    """`--async` sends the whole prompt and every output option, and `--follow-up` too (it was dropped)."""
    photo = wall_photo(width=756, height=1008, holds=20, seed=8)
    (tmp_path / "wall.jpg").write_bytes(photo.jpeg)
    clicks = photo.clicks(3)
    env = {**os.environ, **aws.env}
    result = subprocess.run(
        [sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", "sam-climbing-endpoint", "--async",
         "--bucket", BUCKET, "--endpoint-url", aws.plane_url, "--test-image",
         str(tmp_path / "wall.jpg"), "--points", f"{clicks[0][0]},{clicks[0][1]};{clicks[1][0]},{clicks[1][1]}",
         "--labels", "1,0", "--multimask", "--result-format", "webp", "--mask-format", "png", "--max-side", "512",
         "--follow-up", f"{clicks[2][0]},{clicks[2][1]}", "--out-dir", str(tmp_path / "async-out"), "--timeout-s", "120"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "async-out"
    assert Image.open(out / "result.webp").format == "WEBP" and Image.open(out / "result.webp").size == (384, 512)
    extractor = HoldExtractor.from_model_dir(model_dir, RuntimeSettings())
    for name, clicks_sent, options in (
            ("mask.png", (Click(*clicks[0]), Click(*clicks[1], 0)), ExtractOptions(multimask=True, max_output_side=512)),
            ("follow_up_mask.png", (Click(*clicks[2]),), ExtractOptions(multimask=True, max_output_side=512))):
        mask = Image.open(out / name)
        want = extractor.extract(ExtractRequest(clicks_sent, image_bytes=photo.jpeg, options=options, need_pixels=False))
        assert mask.mode == "L" and np.array_equal(np.asarray(mask) > 0, want.mask), name
    raw = subprocess.run(  # the raw contract (prompt in the custom attributes) and a mask-only answer, via S3 too
        [sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", "sam-climbing-endpoint", "--async",
         "--bucket", BUCKET, "--endpoint-url", aws.plane_url, "--test-image",
         str(tmp_path / "wall.jpg"), "--points", f"{clicks[2][0]},{clicks[2][1]}", "--format", "raw", "--accept", "png",
         "--out-dir", str(tmp_path / "async-raw"), "--timeout-s", "120"],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert raw.returncode == 0, raw.stderr
    assert sorted(p.name for p in (tmp_path / "async-raw").iterdir()) == ["mask.png", "metadata.json"]
    want = extractor.extract(ExtractRequest((Click(*clicks[2]),), image_bytes=photo.jpeg, need_pixels=False))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "async-raw" / "mask.png")) > 0, want.mask)


@pytest.mark.parametrize("instance_type,cache", [
    ("ml.m5.large", "2048MiB"), ("ml.c7i.large", "1024MiB"), ("ml.c7i.4xlarge", "8192MiB"),
    ("ml.m5.24xlarge", "8192MiB"), ("ml.g4dn.xlarge", "4096MiB"), ("ml.t2.medium", "1GiB"), ("ml.p9.unknown", "2GiB"),
])
def test_cache_budget_follows_the_instance_memory(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path,
                                                  instance_type: str, cache: str) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", f"INSTANCE_TYPE={instance_type}", "model")
    assert result.returncode == 0, result.stderr
    create = next(line for line in result.stdout.splitlines() if "create-model" in line)
    assert f'SAM_CACHE_BYTES\\":\\"{cache}\\"' in create or f'"SAM_CACHE_BYTES":"{cache}"' in create, create


def test_dry_run_builds_the_cuda_12_image_for_g4dn_and_picks_its_ami(aws: Rehearsal, tiny_model_dir: Path,
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
def test_check_refuses_an_image_its_host_driver_cannot_start(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path,
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
def test_check_accepts_an_image_its_host_driver_runs(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path,
                                                     settings: list[str], summary: str) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, *settings, "check")
    assert result.returncode == 0 and "check passed" in result.stderr and summary in result.stderr, result.stderr


def test_missing_bucket_setting_is_a_clear_error(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, **aws.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO / "deploy_to_sagemaker.sh"), "--env-file", str(tmp_path / "none.env"),
                             f"MODEL_DIR={tiny_model_dir}", "IMAGE_URI=x", "check"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 1 and "S3_BUCKET is not set" in result.stderr
    bad_mode = _deploy(aws, tmp_path, tiny_model_dir, "--mode", "batch", "status")
    assert bad_mode.returncode == 1 and "DEPLOY_MODE must be realtime or async" in bad_mode.stderr


def test_shellcheck_is_clean() -> None:
    """The entry point (as `make lint` checks it); the tool itself is Python (deploy/), no shell parts."""
    shellcheck = str(Path(sys.executable).parent / "shellcheck")
    assert sorted((REPO / "deploy").glob("*.sh")) == []
    result = subprocess.run([shellcheck, "-x", "deploy_to_sagemaker.sh"], capture_output=True, text=True, check=False,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout
    assert len((REPO / "deploy_to_sagemaker.sh").read_text().splitlines()) <= 12  # a thin entry point


def test_help_prints_the_usage(tmp_path: Path) -> None:
    result = subprocess.run(["bash", str(REPO / "deploy_to_sagemaker.sh"), "--help"], capture_output=True, text=True,
                            check=False, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith("Deploy the SAM hold-extraction endpoint")
    assert "Commands" in result.stdout and "--dry-run" in result.stdout
    assert "set -euo" not in result.stdout and "#" not in result.stdout and "SCRIPT_DIR" not in result.stdout


def test_documented_dry_run_needs_no_image_step(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    result = _deploy(aws, tmp_path, tiny_model_dir, "IMAGE_URI=", "--dry-run", "model", "config", "endpoint")
    assert result.returncode == 0, result.stderr
    create = next(line for line in result.stdout.splitlines() if "create-model" in line)
    assert "123456789012.dkr.ecr.us-east-1.amazonaws.com/sam-climbing:gpu-" in create  # what `image` would push
    assert "arn:aws:iam::123456789012:role/SageMakerExecutionRole" in create
    assert "showing the image 'image' would build and push" in result.stderr
    assert any("create-endpoint " in line for line in result.stdout.splitlines())  # no endpoint yet: create


def test_dry_run_without_credentials_stops_and_says_so(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "HOME": str(home),
           "AWS_ENDPOINT_URL": aws.control_url, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO / "deploy_to_sagemaker.sh"), "--env-file", str(tmp_path / "none.env"),
                             f"S3_BUCKET={BUCKET}", "--dry-run", "model", "config", "endpoint"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --dry-run reads the current state from AWS and needs credentials: no usable AWS credentials "
        "(aws configure, or AWS_PROFILE / AWS_ACCESS_KEY_ID)")


def test_only_not_found_counts_as_a_missing_endpoint(aws: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    denied = "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: sagemaker:DescribeEndpoint"
    httpx.post(aws.control_url + "/_rehearsal/faults", timeout=10, json={
        "operation": "DescribeEndpoint", "status": 400, "code": "AccessDeniedException", "message": denied, "count": 1})
    result = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", "endpoint")
    assert result.returncode == 1
    assert "create-endpoint" not in result.stdout and "update-endpoint" not in result.stdout
    assert f"error: cannot describe endpoint sam-climbing-endpoint: An error occurred (AccessDeniedException) " \
           f"when calling the DescribeEndpoint operation: {denied}" in result.stderr
    missing = _deploy(aws, tmp_path, tiny_model_dir, "--dry-run", "endpoint")  # a real "not found": create
    assert missing.returncode == 0 and "create-endpoint" in missing.stdout, missing.stderr
