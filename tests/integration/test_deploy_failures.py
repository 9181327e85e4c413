"""A failure at any AWS call of an update or a promotion leaves the endpoint InService with its
autoscaling registered: each call of the path, in turn, fails once (the control plane's faults,
``skip`` earlier calls of the same operation), through deploy_to_sagemaker.sh against moto."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.rehearsal_stack import Rehearsal, rehearsal

ENDPOINT = "sam-climbing-endpoint"
FAST = ["POLL_S=0.2"]
AB = ["VARIANT_B_MODEL_DIR=models/challenger", "VARIANT_B_INSTANCE_TYPE=ml.m5.large"]
CODE = "ResourceLimitExceeded"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    """moto and the control plane; no container is invoked (no `test` step)."""
    with rehearsal(tmp_path_factory.mktemp("failures"), "http://127.0.0.1:9") as running:
        yield running


def _deploy(stack: Rehearsal, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return stack.deploy(tmp_path, tmp_path, *FAST, *args)


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def _fault(stack: Rehearsal, operation: str, skip: int, count: int = 1) -> None:
    httpx.post(stack.control_url + "/_rehearsal/faults", timeout=10, json={
        "operation": operation, "skip": skip, "count": count, "status": 400, "code": CODE,
        "message": f"injected at {operation} #{skip}"})


def _path(calls: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Each call as (operation, how many of that operation came before it)."""
    seen: Counter[str] = Counter()
    path = []
    for call in calls:
        path.append((call["operation"], seen[call["operation"]]))
        seen[call["operation"]] += 1
    return path


def _scaling(stack: Rehearsal) -> tuple[list[tuple[str, int, int]], list[tuple[str, str, float]]]:
    scaling = stack.client("application-autoscaling")
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    return (sorted((t["ResourceId"], t["MinCapacity"], t["MaxCapacity"]) for t in targets),
            sorted((p["ResourceId"], p["PolicyName"], p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"])
                   for p in policies))


def _settled(stack: Rehearsal) -> dict[str, Any]:
    sagemaker = stack.client("sagemaker")
    sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=ENDPOINT, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return sagemaker.describe_endpoint(EndpointName=ENDPOINT)  # type: ignore[no-any-return]


def _failed_at(result: subprocess.CompletedProcess[str], operation: str, skip: int) -> None:
    """Exit 1, and one line names the AWS error code and its message."""
    assert result.returncode == 1, (operation, skip, result.stderr)
    assert any(CODE in line and f"injected at {operation} #{skip}" in line for line in result.stderr.splitlines()), \
        (operation, skip, result.stderr)


def test_a_failure_at_any_call_of_an_update_leaves_the_old_config_serving_with_its_scaling(
        stack: Rehearsal, tmp_path: Path) -> None:
    _ok(_deploy(stack, tmp_path, "model", "config", "endpoint", "autoscale"))
    scaled = _scaling(stack)
    assert scaled[0] == [(f"endpoint/{ENDPOINT}/variant/Primary", 1, 2)] and len(scaled[1]) == 1
    _ok(_deploy(stack, tmp_path, "model", "config"))
    stack.calls(clear=True)
    _ok(_deploy(stack, tmp_path, "endpoint"))  # a good update, to learn its calls
    path = _path(stack.calls())
    update_at = path.index(("UpdateEndpoint", 0))
    assert [op for op, _ in path[update_at + 1:]][-2:] == ["RegisterScalableTarget", "PutScalingPolicy"], path
    for position, (operation, skip) in enumerate(path):
        _ok(_deploy(stack, tmp_path, "model", "config"))
        old = _settled(stack)["EndpointConfigName"]
        _fault(stack, operation, skip)
        result = _deploy(stack, tmp_path, "endpoint")
        _fault(stack, operation, 0, count=0)  # a fault the run never reached is not left for the next one
        if operation == "DeleteAlarms":  # an alarm that cannot be deleted does not stop the update
            assert result.returncode == 0 and CODE in result.stderr, result.stderr
        else:
            _failed_at(result, operation, skip)
        after = _settled(stack)
        took_effect = position > update_at or operation == "DeleteAlarms"
        assert (after["EndpointConfigName"] == old) != took_effect, (operation, skip, result.stderr)
        assert _scaling(stack) == scaled, (operation, skip, result.stderr)


def test_a_failure_at_any_call_of_a_promotion_leaves_the_endpoint_serving_with_its_scaling(
        stack: Rehearsal, tmp_path: Path) -> None:
    sagemaker = stack.client("sagemaker")

    def ab_endpoint() -> tuple[str, list[tuple[str, int, int]]]:
        """The A/B endpoint at 90/10 with both variants scaled, from whatever the last try left."""
        exists = bool(sagemaker.list_endpoints()["Endpoints"])
        variants = {v["VariantName"]: v for v in _settled(stack)["ProductionVariants"]} if exists else {}
        if set(variants) != {"Primary", "Challenger"}:
            _ok(_deploy(stack, tmp_path, *AB, "model", "config", "endpoint", "autoscale"))
        elif variants["Challenger"]["CurrentWeight"] != 10:
            _ok(_deploy(stack, tmp_path, "shift", "Primary:90", "Challenger:10"))
        scaled = _scaling(stack)
        assert [t[0].rsplit("/", 1)[1] for t in scaled[0]] == ["Challenger", "Primary"]
        return _settled(stack)["EndpointConfigName"], scaled[0]

    ab_endpoint()
    stack.calls(clear=True)
    _ok(_deploy(stack, tmp_path, "promote", "Primary"))  # a good promotion, to learn its calls
    path = _path(stack.calls())
    update_at = path.index(("UpdateEndpoint", 0))
    for position, (operation, skip) in enumerate(path):
        old_config, old_targets = ab_endpoint()
        configs = len(sagemaker.list_endpoint_configs()["EndpointConfigs"])
        _fault(stack, operation, skip)
        result = _deploy(stack, tmp_path, "promote", "Primary")
        _fault(stack, operation, 0, count=0)
        _failed_at(result, operation, skip)
        after = _settled(stack)
        targets = _scaling(stack)[0]
        if position > update_at:  # the winner alone serves, and keeps its scaling
            assert [v["VariantName"] for v in after["ProductionVariants"]] == ["Primary"], (operation, skip)
            assert targets == [t for t in old_targets if t[0].endswith("/Primary")], (operation, skip, result.stderr)
        else:
            assert after["EndpointConfigName"] == old_config, (operation, skip, result.stderr)
            assert targets == old_targets, (operation, skip, result.stderr)
            assert len(sagemaker.list_endpoint_configs()["EndpointConfigs"]) == configs, (operation, skip)  # none made
