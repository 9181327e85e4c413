"""Autoscaling of the endpoint's variants (Application Auto Scaling): what is registered, what the
settings ask for, and ``scaling_suspended``, which takes it off for an update and puts it back
on every exit (exception and interrupt included)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy.aws import DeployError, aws_error, error_line, info
from deploy.run import Run
from deploy.variants import Variant
from deploy.waits import wait_until_settled

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
STEP_POLICY_SUFFIX = "-scaling-from-zero"


@dataclass(frozen=True)
class Target:
    resource_id: str  # endpoint/<endpoint>/variant/<variant>
    min_capacity: int
    max_capacity: int


@dataclass(frozen=True)
class Policy:
    resource_id: str
    name: str
    policy_type: str  # TargetTrackingScaling or StepScaling
    configuration: dict[str, Any]  # the policy type's configuration, as PutScalingPolicy takes it


@dataclass(frozen=True)
class Scaling:
    """Scalable targets and their policies (a step policy brings the backlog alarm with it)."""

    targets: tuple[Target, ...] = ()
    policies: tuple[Policy, ...] = ()

    def only(self, resource_ids: set[str]) -> Scaling:
        return Scaling(tuple(t for t in self.targets if t.resource_id in resource_ids),
                       tuple(p for p in self.policies if p.resource_id in resource_ids))


def resource_id(endpoint: str, variant: str) -> str:
    return f"endpoint/{endpoint}/variant/{variant}"


def alarm_name(endpoint: str) -> str:
    return f"{endpoint}-has-backlog-without-capacity"


def _lookup(what: str, call: Any, key: str, **params: Any) -> list[dict[str, Any]]:
    try:
        pages = call.paginate(**params)
        return [item for page in pages for item in page[key]]
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"cannot describe the {what}: {aws_error(exc)}") from None


def read_scaling(run: Run) -> Scaling:
    """The endpoint's registered scalable targets and their policies (a failed lookup stops the run)."""
    client = run.aws.client("application-autoscaling")
    prefix = resource_id(run.endpoint, "")
    targets = tuple(Target(t["ResourceId"], int(t["MinCapacity"]), int(t["MaxCapacity"])) for t in _lookup(
        f"scalable targets of {run.endpoint}", client.get_paginator("describe_scalable_targets"), "ScalableTargets",
        ServiceNamespace=NAMESPACE) if t["ResourceId"].startswith(prefix))
    policies = []
    for target in targets:
        for p in _lookup(f"scaling policies of {target.resource_id}", client.get_paginator("describe_scaling_policies"),
                         "ScalingPolicies", ServiceNamespace=NAMESPACE, ResourceId=target.resource_id):
            config_key = f"{p['PolicyType']}PolicyConfiguration"
            policies.append(Policy(target.resource_id, p["PolicyName"], p["PolicyType"], dict(p.get(config_key, {}))))
    return Scaling(targets, tuple(policies))


def planned_scaling(run: Run, variants: tuple[Variant, ...]) -> Scaling:
    """What the settings ask for: per variant a target and target tracking (async: on the backlog,
    down to ASYNC_MIN_INSTANCES, with a step policy that starts the first instance from zero)."""
    s = run.settings
    targets, policies = [], []
    for variant in variants:
        rid = resource_id(run.endpoint, variant.name)
        if s.deploy_mode == "async":
            targets.append(Target(rid, s.async_min_instances, variant.max_instances))
            policies.append(Policy(rid, f"{run.endpoint}-scaling", "TargetTrackingScaling", {
                "TargetValue": s.async_target_backlog_per_instance,
                "CustomizedMetricSpecification": {
                    "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                    "Dimensions": [{"Name": "EndpointName", "Value": run.endpoint}], "Statistic": "Average"},
                "ScaleInCooldown": 600, "ScaleOutCooldown": 120}))
            policies.append(Policy(rid, f"{run.endpoint}{STEP_POLICY_SUFFIX}", "StepScaling", {
                "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 120,
                "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}))
        else:
            targets.append(Target(rid, variant.min_instances, variant.max_instances))
            policies.append(Policy(rid, f"{run.endpoint}-scaling", "TargetTrackingScaling", {
                "TargetValue": variant.target_invocations_per_instance,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": 300, "ScaleOutCooldown": 60}))
    return Scaling(tuple(targets), tuple(policies))


def apply_scaling(run: Run, scaling: Scaling) -> None:
    """Register each target, then put its policies (a step policy gets the backlog alarm); idempotent."""
    for target in scaling.targets:
        run.aws.change("application-autoscaling", "RegisterScalableTarget", ServiceNamespace=NAMESPACE,
                       ResourceId=target.resource_id, ScalableDimension=DIMENSION,
                       MinCapacity=target.min_capacity, MaxCapacity=target.max_capacity)
        for policy in (p for p in scaling.policies if p.resource_id == target.resource_id):
            answer = run.aws.change("application-autoscaling", "PutScalingPolicy", PolicyName=policy.name,
                                    ServiceNamespace=NAMESPACE, ResourceId=policy.resource_id,
                                    ScalableDimension=DIMENSION, PolicyType=policy.policy_type,
                                    **{f"{policy.policy_type}PolicyConfiguration": policy.configuration})
            if policy.policy_type == "StepScaling":
                _backlog_alarm(run, answer.get("PolicyARN", "DRY-RUN-POLICY-ARN"))
        info(f"autoscaling for {target.resource_id} ({run.settings.deploy_mode})")


def _backlog_alarm(run: Run, step_policy_arn: str) -> None:
    """From zero instances the backlog per instance is undefined: HasBacklogWithoutCapacity starts one."""
    run.aws.change("cloudwatch", "PutMetricAlarm", AlarmName=alarm_name(run.endpoint), Namespace="AWS/SageMaker",
                   MetricName="HasBacklogWithoutCapacity", Dimensions=[{"Name": "EndpointName", "Value": run.endpoint}],
                   Statistic="Average", Period=60, EvaluationPeriods=2, Threshold=1,
                   ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="missing",
                   AlarmActions=[step_policy_arn])


def remove_scaling(run: Run, scaling: Scaling, delete_alarm: bool = True) -> None:
    """Delete the policies (and the backlog alarm), then deregister the targets."""
    for policy in scaling.policies:
        run.aws.change("application-autoscaling", "DeleteScalingPolicy", ServiceNamespace=NAMESPACE,
                       PolicyName=policy.name, ResourceId=policy.resource_id, ScalableDimension=DIMENSION)
    if delete_alarm:
        try:
            run.aws.change("cloudwatch", "DeleteAlarms", AlarmNames=[alarm_name(run.endpoint)])
        except (BotoCoreError, ClientError) as exc:
            info(f"the backlog alarm {alarm_name(run.endpoint)} was not deleted: {aws_error(exc)}")
    for target in scaling.targets:
        run.aws.change("application-autoscaling", "DeregisterScalableTarget", ServiceNamespace=NAMESPACE,
                       ResourceId=target.resource_id, ScalableDimension=DIMENSION)


@dataclass
class Resumption:
    """What ``scaling_suspended`` puts back: ``before`` on a failure, ``after`` (when set) on success."""

    before: Scaling
    after: Scaling | None = None


@contextmanager
def scaling_suspended(run: Run, only: set[str] | None = None, delete_alarm: bool = True) -> Iterator[Resumption]:
    """Take the endpoint's autoscaling (or the ``only`` resource ids') off for the block, and put it
    back on every exit: ``resumption.after`` when the block set it and ended normally, else what
    was there before (for the variants the endpoint still serves)."""
    before = read_scaling(run)
    resumption = Resumption(before.only(only) if only is not None else before)
    if not resumption.before.targets:
        yield resumption
        return
    try:
        remove_scaling(run, resumption.before, delete_alarm)
        yield resumption
    except BaseException as exc:
        info("registering autoscaling again for the variants that keep serving")
        _restore(run, resumption.before, interrupted=not isinstance(exc, Exception))
        raise
    if resumption.after is not None:
        try:
            apply_scaling(run, resumption.after)
        except (BotoCoreError, ClientError) as exc:
            info("the new autoscaling could not be registered: putting the previous one back")
            restored = _restore(run, resumption.before, interrupted=False)
            raise DeployError(f"the update is done but its autoscaling was not registered: {aws_error(exc)} "
                              f"({'the previous scaling was put back; ' if restored else ''}run 'autoscale' to apply "
                              "the new one)") from None
        run.autoscale_done = True


def _restore(run: Run, scaling: Scaling, interrupted: bool) -> bool:
    """Put ``scaling`` back for the variants the endpoint still has (after it settled, unless
    interrupted); False, having said what is missing, when that failed."""
    if run.dry_run:
        apply_scaling(run, scaling)
        return True
    try:
        if not interrupted:
            wait_until_settled(run)
        described = run.aws.describe_endpoint(run.endpoint)
        if described is not None:
            serving = {resource_id(run.endpoint, v["VariantName"]) for v in described.get("ProductionVariants", [])}
            scaling = scaling.only(serving)
        apply_scaling(run, scaling)
    except (DeployError, BotoCoreError, ClientError) as exc:
        missing = " ".join(t.resource_id for t in scaling.targets)
        error_line(f"autoscaling was NOT registered again for {missing}: {exc}; run "
                   "'./deploy_to_sagemaker.sh autoscale' once the endpoint is InService")
        return False
    return True
