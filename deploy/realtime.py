"""The endpoint's life: `model`, `config`, `endpoint` (create, or update in place keeping
capacity and autoscaling) and `autoscale`."""

from __future__ import annotations

import random
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy.aws import DeployError, aws_error, info
from deploy.container import Job, container_environment
from deploy.images import resolve_image
from deploy.run import Run
from deploy.scaling import apply_scaling, planned_scaling, resource_id, scaling_suspended
from deploy.startup import variant_startup_window
from deploy.variants import Variant
from deploy.waits import NotInService, logs_of, wait_for_endpoint

UPDATABLE = ("InService", "Failed")


def unique_suffix(stamp: str) -> str:
    return f"{stamp}-{random.randrange(32768)}"


def role_arn(run: Run) -> str:
    return run.settings.role_arn or f"arn:aws:iam::{run.aws.account_id()}:role/SageMakerExecutionRole"


def model_key(run: Run, variant: Variant) -> str:
    return f"MODEL_{variant.name}" if run.settings.ab_test else "MODEL"


def create_model(run: Run, name: str, variant: Variant, s3_key: str, environment: dict[str, str]) -> None:
    """A SageMaker model of the variant's image and archive, in the VPC when one is set."""
    request: dict[str, Any] = {
        "ModelName": name, "ExecutionRoleArn": role_arn(run),
        "PrimaryContainer": {"Image": resolve_image(run, variant),
                             "ModelDataUrl": f"s3://{run.settings.require_bucket()}/{s3_key}",
                             "Environment": environment},
        "Tags": run.tags()}
    vpc = run.settings.network.vpc_config()
    if vpc:
        request["VpcConfig"] = vpc
    run.aws.change("sagemaker", "CreateModel", **request)


def cmd_model(run: Run) -> None:
    run.settings.require_bucket()
    for variant in run.settings.variants:
        name = f"{run.settings.model_name}-{unique_suffix(time.strftime('%Y%m%d%H%M%S', time.gmtime()))}"
        job = Job(run.settings, variant, run.settings.deploy_mode, variant.instance_type, variant.image_variant)
        create_model(run, name, variant, variant.s3_key, container_environment(job))
        run.state.set(model_key(run, variant), name)
        info(f"model {name}" + (f" (variant {variant.name})" if variant.key else ""))


def production_variant(run: Run, variant: Variant) -> dict[str, Any]:
    """The variant's ProductionVariant for an endpoint config (its weight only in an A/B test)."""
    model = run.state.get(model_key(run, variant))
    if not model and not run.dry_run:
        raise DeployError("no model" + (f" for variant {variant.name}" if variant.key else "") + ": run 'model' first")
    entry: dict[str, Any] = {
        "VariantName": variant.name, "ModelName": model or f"{run.settings.model_name}-DRYRUN",
        "InstanceType": variant.instance_type, "InitialInstanceCount": variant.initial_instance_count,
        "ContainerStartupHealthCheckTimeoutInSeconds":
            variant_startup_window(run.settings.startup_health_timeout_s, variant).timeout_s}
    if variant.ami_version != "none":
        entry["InferenceAmiVersion"] = variant.ami_version
    if variant.key:
        entry["InitialVariantWeight"] = variant.weight
    return entry


def async_inference_config(run: Run) -> dict[str, Any]:
    s = run.settings
    output: dict[str, Any] = {"S3OutputPath": f"s3://{s.require_bucket()}/{s.async_output_prefix}/output",
                              "S3FailurePath": f"s3://{s.s3_bucket}/{s.async_output_prefix}/failure"}
    topics = {key: topic for key, topic in (("SuccessTopic", s.sns_success_topic), ("ErrorTopic", s.sns_error_topic))
              if topic}
    if topics:
        output["NotificationConfig"] = topics
    return {"OutputConfig": output, "ClientConfig": {"MaxConcurrentInvocationsPerInstance": s.async_max_concurrent}}


def cmd_config(run: Run) -> None:
    name = f"{run.settings.model_name}-config-{unique_suffix(str(int(time.time())))}"
    variants = [production_variant(run, v) for v in run.settings.variants]
    request: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": variants, "Tags": run.tags()}
    if run.settings.deploy_mode == "async":
        request["AsyncInferenceConfig"] = async_inference_config(run)
    run.aws.change("sagemaker", "CreateEndpointConfig", **request)
    run.state.set("CONFIG", name)
    if run.settings.ab_test:
        summary = "; ".join(f"{v.name}: {v.instance_type}, {v.host_summary()}, weight {v.weight:g}"
                            for v in run.settings.variants)
    else:
        summary = f"{run.settings.base.instance_type}, {run.settings.base.host_summary()}"
    info(f"endpoint config {name} ({run.settings.deploy_mode}, {summary})")
    for variant in run.settings.variants:
        window = variant_startup_window(run.settings.startup_health_timeout_s, variant)
        info(f"start-up health check of variant {variant.name}: {window.timeout_s} s ({window.reason})")


def cmd_endpoint(run: Run) -> None:
    config = run.state.get("CONFIG")
    if not config and not run.dry_run:
        raise DeployError("no endpoint config: run 'config' first")
    config = config or f"{run.settings.model_name}-config-DRYRUN"
    described = run.aws.describe_endpoint(run.endpoint)
    if described is None:
        run.aws.change("sagemaker", "CreateEndpoint", EndpointName=run.endpoint, EndpointConfigName=config,
                       Tags=run.tags())
        if not run.dry_run:
            wait_for_endpoint(run)
    else:
        update_endpoint(run, config, described["EndpointStatus"])


def update_endpoint(run: Run, config: str, status: str) -> None:
    """Update in place, in AWS's order for autoscaled variants: scaling off (an update that changes an
    autoscaled variant's instance type fails otherwise), UpdateEndpoint keeping each variant's instance
    count (in an A/B test the new config's weights apply), wait for InService on ``config``, scaling
    on again; a failure anywhere puts the old scaling back on the variants that keep serving."""
    if status not in UPDATABLE:
        raise DeployError(f"endpoint {run.endpoint} is {status}: wait until it is InService, then deploy again")
    info(f"endpoint {run.endpoint} exists ({status}): updating it in place (blue/green) to {config}")
    request: dict[str, Any] = {"EndpointName": run.endpoint, "EndpointConfigName": config,
                               "RetainAllVariantProperties": True}
    if run.settings.ab_test:
        request["ExcludeRetainedVariantProperties"] = [{"VariantPropertyType": "DesiredWeight"}]
    with scaling_suspended(run) as resumption:
        try:
            run.aws.change("sagemaker", "UpdateEndpoint", **request)
        except (BotoCoreError, ClientError) as exc:
            raise DeployError(f"cannot update {run.endpoint} to {config}: {aws_error(exc)}; it keeps serving its "
                              "current config") from None
        if run.dry_run:
            print(f"DRY-RUN: wait until {run.endpoint} is InService", flush=True)
        else:
            try:
                wait_for_endpoint(run, config)
            except NotInService:
                raise DeployError(f"the update of {run.endpoint} to {config} did not reach InService "
                                  f"(logs: {logs_of(run.endpoint)})") from None
        resumption.after = planned_scaling(run, run.settings.variants)


def cmd_autoscale(run: Run) -> None:
    """Target tracking for every variant (once: an update that registered it again is not repeated)."""
    if run.autoscale_done:
        for variant in run.settings.variants:
            info(f"autoscaling for {resource_id(run.endpoint, variant.name)} was registered again after the update")
        return
    apply_scaling(run, planned_scaling(run, run.settings.variants))
