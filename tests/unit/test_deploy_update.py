"""The update path and its waits against botocore's Stubber: the call sequence AWS asks for, the
rollbacks AWS's waiters miss, and autoscaling put back on every exit (error and interrupt)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from deploy.aws import Aws, DeployError
from deploy.realtime import cmd_autoscale, update_endpoint
from deploy.run import Run
from deploy.settings import settings_from_env
from deploy.waits import NotInService, wait_for_endpoint

EP = "sam-climbing-endpoint"
RID = f"endpoint/{EP}/variant/Primary"
DIM = "sagemaker:variant:DesiredInstanceCount"
TRACKING = {"TargetValue": 20.0, "PredefinedMetricSpecification": {"PredefinedMetricType":
                                                                     "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300, "ScaleOutCooldown": 60}


class Clock:
    """Seconds that pass only when the run sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@contextmanager
def stubbed(**environ: str) -> Iterator[tuple[Run, dict[str, Stubber]]]:
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    clients = {name: session.client(name) for name in ("sagemaker", "application-autoscaling", "cloudwatch")}
    stubs = {name: Stubber(client) for name, client in clients.items()}
    settings = settings_from_env({"POLL_S": "15", "WAIT_TIMEOUT_S": "60", **environ}, "us-east-1")
    clock = Clock()
    run = Run.create(settings, Aws(session, dry_run=False, clients=clients))
    run.sleep, run.clock = clock.sleep, clock
    for stub in stubs.values():
        stub.activate()
    yield run, stubs
    for stub in stubs.values():
        stub.assert_no_pending_responses()


def endpoint(status: str, config: str = "old-config", reason: str | None = None) -> dict[str, Any]:
    answer = {"EndpointName": EP, "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{EP}",
              "EndpointConfigName": config, "EndpointStatus": status, "CreationTime": "2026-12-01T00:00:00Z",
              "LastModifiedTime": "2026-12-01T00:00:00Z",
              "ProductionVariants": [{"VariantName": "Primary", "CurrentInstanceCount": 2, "CurrentWeight": 1.0}]}
    if reason:
        answer["FailureReason"] = reason
    return answer


def describes(stubs: dict[str, Stubber], *answers: dict[str, Any]) -> None:
    for answer in answers:
        stubs["sagemaker"].add_response("describe_endpoint", answer, {"EndpointName": EP})


def registered_scaling(stubs: dict[str, Stubber]) -> None:
    scaling = stubs["application-autoscaling"]
    scaling.add_response("describe_scalable_targets", {"ScalableTargets": [{
        "ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": DIM, "MinCapacity": 1, "MaxCapacity": 2,
        "RoleARN": "arn:aws:iam::123456789012:role/scaling", "CreationTime": "2026-12-01T00:00:00Z"}]},
        {"ServiceNamespace": "sagemaker"})
    scaling.add_response("describe_scaling_policies", {"ScalingPolicies": [{
        "PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:p", "PolicyName": f"{EP}-scaling", "ServiceNamespace": "sagemaker", "ResourceId": RID,
        "ScalableDimension": DIM, "PolicyType": "TargetTrackingScaling", "CreationTime": "2026-12-01T00:00:00Z",
        "TargetTrackingScalingPolicyConfiguration": TRACKING}]}, {"ServiceNamespace": "sagemaker", "ResourceId": RID})


def scaling_off(stubs: dict[str, Stubber]) -> None:
    scaling = stubs["application-autoscaling"]
    scaling.add_response("delete_scaling_policy", {}, {"ServiceNamespace": "sagemaker", "PolicyName": f"{EP}-scaling",
                                                       "ResourceId": RID, "ScalableDimension": DIM})
    stubs["cloudwatch"].add_response("delete_alarms", {}, {"AlarmNames": [f"{EP}-has-backlog-without-capacity"]})
    scaling.add_response("deregister_scalable_target", {}, {"ServiceNamespace": "sagemaker", "ResourceId": RID,
                                                            "ScalableDimension": DIM})


def scaling_on(stubs: dict[str, Stubber]) -> None:
    scaling = stubs["application-autoscaling"]
    scaling.add_response("register_scalable_target", {}, {"ServiceNamespace": "sagemaker", "ResourceId": RID,
                                                          "ScalableDimension": DIM, "MinCapacity": 1, "MaxCapacity": 2})
    scaling.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:p2", "Alarms": []}, {
        "PolicyName": f"{EP}-scaling", "ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": DIM,
        "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": TRACKING})


UPDATE = {"EndpointName": EP, "EndpointConfigName": "new-config", "RetainAllVariantProperties": True}


def test_update_turns_scaling_off_updates_waits_and_turns_it_on() -> None:
    with stubbed() as (run, stubs):
        registered_scaling(stubs)
        scaling_off(stubs)
        stubs["sagemaker"].add_response("update_endpoint", {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{EP}"}, UPDATE)
        describes(stubs, endpoint("Updating"), endpoint("InService", "new-config"))
        scaling_on(stubs)
        update_endpoint(run, "new-config", "InService")
        assert run.autoscale_done


@pytest.mark.parametrize("failure", ["update", "wait", "interrupt"])
def test_a_failed_update_puts_the_scaling_back(failure: str) -> None:
    """UpdateEndpoint refused (the issue's ResourceLimitExceeded), a rollback seen in the wait, or
    Ctrl-C during the wait: each exits with the old scaling registered again."""
    with stubbed() as (run, stubs):
        registered_scaling(stubs)
        scaling_off(stubs)
        if failure == "update":
            stubs["sagemaker"].add_client_error("update_endpoint", "ResourceLimitExceeded", "no capacity",
                                                expected_params=UPDATE)
            describes(stubs, endpoint("InService"), endpoint("InService"))  # settled? which variants serve?
        elif failure == "wait":
            stubs["sagemaker"].add_response("update_endpoint", {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{EP}"}, UPDATE)
            describes(stubs, endpoint("Updating"), endpoint("InService", reason="ping failed"),
                      endpoint("InService"), endpoint("InService"))
        else:
            stubs["sagemaker"].add_response("update_endpoint", {"EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{EP}"}, UPDATE)
            describes(stubs, endpoint("Updating"), endpoint("Updating"))

            def interrupt(seconds: float) -> None:
                raise KeyboardInterrupt
            run.sleep = interrupt
        scaling_on(stubs)
        expected: type[BaseException] = KeyboardInterrupt if failure == "interrupt" else DeployError
        with pytest.raises(expected) as stopped:
            update_endpoint(run, "new-config", "InService")
        if failure == "update":
            assert "ResourceLimitExceeded" in str(stopped.value) and "no capacity" in str(stopped.value)
        if failure == "wait":
            assert "did not reach InService" in str(stopped.value)
        assert not run.autoscale_done


@pytest.mark.parametrize("answers,message", [
    ([endpoint("Updating"), endpoint("InService", "old-config", "ping failed")],
     "is rolled back to its previous config (old-config): ping failed"),
    ([endpoint("Updating"), endpoint("RollingBack"), endpoint("InService", "new-config")],
     "is rolled back to its previous config (new-config)"),
    ([endpoint("Updating"), endpoint("UpdateRollbackFailed", reason="mixed fleet")], "is UpdateRollbackFailed: mixed fleet"),
    ([endpoint("Failed", reason="bad image")], "is Failed: bad image"),
    ([endpoint("Updating")] * 5, "is still Updating after 60s"),
])
def test_waits_catch_what_aws_waiters_miss(answers: list[dict[str, Any]], message: str, capsys: Any) -> None:
    with stubbed() as (run, stubs):
        describes(stubs, *answers)
        with pytest.raises(NotInService, match=message.replace("(", r"\(").replace(")", r"\)")):
            wait_for_endpoint(run, "new-config")
    assert f"error: endpoint {EP} {message}" in capsys.readouterr().err


def test_wait_returns_once_in_service_on_the_config_asked_for() -> None:
    with stubbed() as (run, stubs):
        describes(stubs, endpoint("Updating"), endpoint("Updating"), endpoint("InService", "new-config"))
        assert wait_for_endpoint(run, "new-config")["EndpointConfigName"] == "new-config"
        assert run.clock() == 30  # two polls of POLL_S


def test_an_update_is_refused_while_the_endpoint_is_busy() -> None:
    with stubbed() as (run, _), pytest.raises(DeployError, match="is Updating: wait until it is InService"):
        update_endpoint(run, "new-config", "Updating")



def test_async_autoscale_scales_from_zero_with_the_step_policy_behind_the_alarm() -> None:
    step_arn = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:step"
    with stubbed(DEPLOY_MODE="async", INSTANCE_TYPE="ml.m5.xlarge", MAX_INSTANCES="3") as (run, stubs):
        scaling = stubs["application-autoscaling"]
        scaling.add_response("register_scalable_target", {}, {"ServiceNamespace": "sagemaker", "ResourceId": RID,
                                                              "ScalableDimension": DIM, "MinCapacity": 0, "MaxCapacity": 3})
        scaling.add_response("put_scaling_policy", {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:t",
                                                    "Alarms": []}, {
            "PolicyName": f"{EP}-scaling", "ServiceNamespace": "sagemaker", "ResourceId": RID, "ScalableDimension": DIM,
            "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 5.0, "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": EP}], "Statistic": "Average"},
                "ScaleInCooldown": 600, "ScaleOutCooldown": 120}})
        scaling.add_response("put_scaling_policy", {"PolicyARN": step_arn, "Alarms": []}, {
            "PolicyName": f"{EP}-scaling-from-zero", "ServiceNamespace": "sagemaker", "ResourceId": RID,
            "ScalableDimension": DIM, "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {
                "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 120,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}})
        stubs["cloudwatch"].add_response("put_metric_alarm", {}, {
            "AlarmName": f"{EP}-has-backlog-without-capacity", "Namespace": "AWS/SageMaker",
            "MetricName": "HasBacklogWithoutCapacity", "Dimensions": [{"Name": "EndpointName", "Value": EP}],
            "Statistic": "Average", "Period": 60, "EvaluationPeriods": 2, "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "missing",
            "AlarmActions": [step_arn]})
        cmd_autoscale(run)
