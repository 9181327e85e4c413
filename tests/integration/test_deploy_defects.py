"""The defects issue 22 found in the bash deploy tool, each rehearsed through deploy_to_sagemaker.sh
against moto and the control plane: settings checked before anything is created, requests built
as data, the region from the AWS profile, a failed listing that stops `delete`, and a refused
UpdateEndpoint that leaves autoscaling registered."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.rehearsal_stack import Rehearsal, rehearsal

ENDPOINT = "sam-climbing-endpoint"
TOPIC = "arn:aws:sns:us-east-1:123456789012:holds-done"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    with rehearsal(tmp_path_factory.mktemp("defects"), "http://127.0.0.1:9") as running:
        yield running


def _deploy(stack: Rehearsal, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return stack.deploy(tmp_path, tmp_path, "POLL_S=1", *args, env=env)


def _fault(stack: Rehearsal, operation: str, code: str, message: str) -> None:
    httpx.post(stack.control_url + "/_rehearsal/faults", timeout=10,
               json={"operation": operation, "status": 400, "code": code, "message": message, "count": 1})


def test_a_bad_setting_stops_before_anything_is_created(stack: Rehearsal, tmp_path: Path) -> None:
    result = _deploy(stack, tmp_path, "INITIAL_INSTANCE_COUNT=two", "model", "config")
    assert stack.client("sagemaker").list_models()["Models"] == []  # the bash version had made the model
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "error: INITIAL_INSTANCE_COUNT must be a whole number, not 'two'"


def test_one_notification_topic_sends_only_that_topic(stack: Rehearsal, tmp_path: Path) -> None:
    result = _deploy(stack, tmp_path, "--mode", "async", "INSTANCE_TYPE=ml.m5.large", f"SNS_SUCCESS_TOPIC={TOPIC}",
                     "--dry-run", "config")
    assert result.returncode == 0, result.stderr
    config = next(line for line in result.stdout.splitlines() if "create-endpoint-config" in line)
    assert f'\\"NotificationConfig\\":\\{{\\"SuccessTopic\\":\\"{TOPIC}\\"\\}}' in config, config
    assert "ErrorTopic" not in config  # "ErrorTopic":"" is refused by SageMaker


def test_the_region_comes_from_the_aws_profile(stack: Rehearsal, tmp_path: Path) -> None:
    config = tmp_path / "aws-config"
    config.write_text("[profile climbing]\nregion = eu-west-1\n")
    result = _deploy(stack, tmp_path, "check", AWS_DEFAULT_REGION="", AWS_PROFILE="climbing",
                     AWS_CONFIG_FILE=str(config))
    assert result.returncode == 0, result.stderr
    assert "region eu-west-1," in result.stderr  # the bash version forced us-east-1


def test_delete_stops_when_a_listing_fails(stack: Rehearsal, tmp_path: Path) -> None:
    created = _deploy(stack, tmp_path, "model", "config")
    assert created.returncode == 0, created.stderr
    _fault(stack, "ListEndpointConfigs", "AccessDeniedException", "not allowed to list endpoint configs")
    result = _deploy(stack, tmp_path, "delete")
    assert result.returncode == 1, result.stderr
    assert "cannot list the configs of sam-climbing-endpoint: An error occurred (AccessDeniedException) when calling " \
           "the ListEndpointConfigs operation: not allowed to list endpoint configs" in result.stderr
    assert "nothing was deleted" in result.stderr and "[deploy] deleted" not in result.stderr  # bash: "deleted", config left
    assert _deploy(stack, tmp_path, "delete").returncode == 0
    assert stack.client("sagemaker").list_endpoint_configs()["EndpointConfigs"] == []


def test_a_refused_update_leaves_the_autoscaling_registered(stack: Rehearsal, tmp_path: Path) -> None:
    deployed = _deploy(stack, tmp_path, "model", "config", "endpoint", "autoscale")
    assert deployed.returncode == 0, deployed.stderr
    scaling = stack.client("application-autoscaling")
    before = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert [t["ResourceId"] for t in before] == [f"endpoint/{ENDPOINT}/variant/Primary"] and len(policies) == 1
    _fault(stack, "UpdateEndpoint", "ResourceLimitExceeded", "The account-level service limit is exceeded")
    failed = _deploy(stack, tmp_path, "INSTANCE_TYPE=ml.m5.large", "model", "config", "endpoint")
    after = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [(t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in after] == [
        (t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in before]  # bash: none left
    assert [p["PolicyName"] for p in scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]] \
        == [p["PolicyName"] for p in policies]
    assert failed.returncode == 1
    assert "ResourceLimitExceeded" in failed.stderr.strip().splitlines()[-1]
    assert _deploy(stack, tmp_path, "delete").returncode == 0
