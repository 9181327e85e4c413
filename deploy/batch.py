"""Batch transform: `batch INPUT_S3_PREFIX OUTPUT_S3_PREFIX`.

One request file per photo under the input prefix: .zip (the asynchronous endpoint's contract:
image.bin + points.json) or .json (the real-time JSON body); all of one kind per job (SageMaker
sends one ContentType per job; BATCH_CONTENT_TYPE overrides). One file is one record (SplitType
None, BatchStrategy SingleRecord). Each answer is written to OUTPUT_S3_PREFIX<path below the input
prefix>.out: the response body (a zip with result_image.bin, mask_image.bin and metadata.json, or
the JSON answer). `batch --warm` (deploy.warm) runs the same kind of job over photos to fill the
shared embedding tier; ``start_transform_job`` makes either job.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy import hosts
from deploy.aws import DeployError, aws_error, dry_run_line, error_line, info
from deploy.container import Job, container_environment
from deploy.realtime import create_model, unique_suffix
from deploy.run import Run
from deploy.variants import Variant
from deploy.waits import wait_for_transform_job
from holds_client.s3_uri import split_s3_uri

TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"
CONTENT_TYPES = {"zip": "application/zip", "json": "application/json"}


def split_prefix(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix -> (bucket, "prefix/"): a trailing slash, so s3://b/in never matches s3://b/input-old/."""
    try:
        bucket, prefix = split_s3_uri(uri)
    except ValueError:
        raise DeployError(f"'{uri}' is not an s3://bucket/prefix/ location") from None
    if not bucket:
        raise DeployError(f"'{uri}' is not an s3://bucket/prefix/ location")
    return bucket, prefix if not prefix or prefix.endswith("/") else prefix + "/"


def list_objects(run: Run, bucket: str, prefix: str) -> dict[str, int]:
    """Object key -> size under the prefix (no folder markers); a failed listing stops the run."""
    try:
        pages = run.aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: int(o["Size"]) for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")}
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"cannot list s3://{bucket}/{prefix}: {aws_error(exc)}") from None


def content_type(run: Run, keys: list[str]) -> str:
    """The job's ContentType from the files' extensions (or BATCH_CONTENT_TYPE)."""
    if run.settings.batch.content_type:
        return run.settings.batch.content_type
    kinds = sorted({key.rsplit(".", 1)[1].lower() if "." in key.rsplit("/", 1)[-1] else "(none)" for key in keys})
    if len(kinds) == 1 and kinds[0] in CONTENT_TYPES:
        return CONTENT_TYPES[kinds[0]]
    raise DeployError(f"the request files must all be .zip or all .json (one ContentType per job), found: "
                      f"{' '.join(kinds)}; split them into two prefixes, or set BATCH_CONTENT_TYPE")


def batch_variant(run: Run) -> Variant:
    """The plain settings on the batch instance type, with its image; refuses a host it cannot run on."""
    b = run.settings.batch
    variant = dataclasses.replace(run.settings.base, instance_type=b.instance_type, image_variant=b.image_variant)
    if variant.image_variant == "gpu":
        if hosts.has_no_nvidia_gpu(variant.instance_type):
            raise DeployError(f"{variant.instance_type} has no NVIDIA GPU: the GPU image cannot run there")
        if variant.cuda_major != hosts.TRANSFORM_CUDA_MAJOR:
            raise DeployError(f"the CUDA {variant.cuda_major} image cannot run a batch transform: SageMaker's batch GPU "
                              f"AMIs have drivers 470 and 535 (CUDA 12 runs on {hosts.TRANSFORM_GPU_AMI}); use CUDA_MAJOR=12")
    return variant


def _checked_inputs(run: Run, source: str, target: str) -> tuple[tuple[str, str], tuple[str, str], dict[str, int]]:
    (in_bucket, in_prefix), (out_bucket, out_prefix) = split_prefix(source), split_prefix(target)
    if f"{out_bucket}/{out_prefix}".startswith(f"{in_bucket}/{in_prefix}") or \
            f"{in_bucket}/{in_prefix}".startswith(f"{out_bucket}/{out_prefix}"):
        raise DeployError("the output prefix must not overlap the input prefix: the outputs would become inputs of "
                          "the next job")
    requests = list_objects(run, in_bucket, in_prefix)
    if not requests:
        raise DeployError(f"no request files under s3://{in_bucket}/{in_prefix} (one .zip or .json per photo)")
    b = run.settings.batch
    too_large = [f"{key} ({size} bytes)" for key, size in requests.items() if size > b.max_payload_mb << 20][:5]
    if too_large:
        raise DeployError(f"request files over BATCH_MAX_PAYLOAD_MB={b.max_payload_mb} MiB (SageMaker would fail "
                          f"them): {','.join(too_large)}; raise BATCH_MAX_PAYLOAD_MB (at most "
                          f"{100 // b.max_concurrent} with BATCH_MAX_CONCURRENT={b.max_concurrent})")
    return (in_bucket, in_prefix), (out_bucket, out_prefix), requests


@dataclass(frozen=True)
class TransformJob:
    """A started transform job: its name, the input files (key -> bytes) and both prefixes (bucket, "prefix/")."""

    name: str
    requests: dict[str, int]
    source: tuple[str, str]
    target: tuple[str, str]


@dataclass(frozen=True)
class JobKind:
    """What differs between jobs: the ContentType from the file keys (None: ``content_type``), the Accept
    (None: BATCH_ACCEPT, else the ContentType), the job's own container Environment, and what its files
    are called in the log."""

    content_type: Callable[[Run, list[str]], str] | None = None
    accept: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    files: str = "request files"


def start_transform_job(run: Run, source: str, target: str, job_kind: JobKind) -> TransformJob | None:
    """Check the prefixes and the archive, create the job's model and the job; None on a dry run."""
    s, b = run.settings, run.settings.batch
    bucket = s.require_bucket()
    (in_bucket, in_prefix), (out_bucket, out_prefix), requests = _checked_inputs(run, source, target)
    kind = (job_kind.content_type or content_type)(run, list(requests))
    variant = batch_variant(run)
    if not run.dry_run:
        try:
            run.aws.client("s3").head_object(Bucket=bucket, Key=s.base.s3_key)
        except (BotoCoreError, ClientError):
            raise DeployError(f"no model archive at s3://{bucket}/{s.base.s3_key}: run 'package' first (e.g. "
                              "./deploy_to_sagemaker.sh package batch ...)") from None
    name = f"{s.model_name[:36]}-batch-{unique_suffix(time.strftime('%Y%m%d%H%M%S', time.gmtime()))}"  # <= 63 chars
    create_model(run, name, variant, s.base.s3_key, container_environment(
        Job(s, variant, "batch", variant.instance_type, variant.image_variant)))
    resources: dict[str, Any] = {"InstanceType": variant.instance_type, "InstanceCount": b.instance_count}
    if variant.image_variant == "gpu":
        resources["TransformAmiVersion"] = hosts.TRANSFORM_GPU_AMI
    extra = {"Environment": job_kind.environment} if job_kind.environment else {}
    run.aws.change(
        "sagemaker", "CreateTransformJob", TransformJobName=name, ModelName=name, MaxConcurrentTransforms=b.max_concurrent,
        MaxPayloadInMB=b.max_payload_mb, BatchStrategy="SingleRecord",
        ModelClientConfig={"InvocationsTimeoutInSeconds": b.invocation_timeout_s, "InvocationsMaxRetries": b.max_retries},
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{in_bucket}/{in_prefix}"}},
                        "ContentType": kind, "SplitType": "None", "CompressionType": "None"},
        TransformOutput={"S3OutputPath": f"s3://{out_bucket}/{out_prefix}", "Accept": job_kind.accept or b.accept or kind,
                         "AssembleWith": "None"},
        TransformResources=resources, Tags=run.tags(), **extra)
    image = variant.host_summary().split(", InferenceAmiVersion")[0]
    ami = f", TransformAmiVersion={resources['TransformAmiVersion']}" if "TransformAmiVersion" in resources else ""
    info(f"transform job {name}: {len(requests)} {job_kind.files} ({kind}) from s3://{in_bucket}/{in_prefix} on "
         f"{b.instance_count} x {variant.instance_type} ({image}{ami}), MaxConcurrentTransforms {b.max_concurrent}, "
         f"MaxPayloadInMB {b.max_payload_mb}")
    if run.dry_run:
        dry_run_line(f"wait for transform job {name}, then compare s3://{out_bucket}/{out_prefix} with the inputs")
        return None
    wait_for_transform_job(run, name)
    return TransformJob(name, requests, (in_bucket, in_prefix), (out_bucket, out_prefix))


def cmd_batch(run: Run, source: str, target: str) -> None:
    job = start_transform_job(run, source, target, JobKind())
    if job is not None:
        report_transform_job(run, job.name, list(job.requests), job.source[1], job.target)


def report_transform_job(run: Run, job: str, requests: list[str], in_prefix: str, output: tuple[str, str]) -> None:
    """Which inputs got their .out; on a failure, SageMaker's reason and the failed records' log lines."""
    out_bucket, out_prefix = output
    try:
        described = run.aws.client("sagemaker").describe_transform_job(TransformJobName=job)
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"cannot describe transform job {job}: {aws_error(exc)}") from None
    outputs = set(list_objects(run, out_bucket, out_prefix))
    missing = [key for key in requests if f"{out_prefix}{key[len(in_prefix):]}.out" not in outputs]
    where = f"s3://{out_bucket}/{out_prefix}"
    if described["TransformJobStatus"] == "Completed" and not missing:
        info(f"transform job {job} Completed: all {len(requests)} request files answered, in {where} (<file>.out)")
        return
    error_line(f"transform job {job} is {described['TransformJobStatus']}: "
               f"{described.get('FailureReason') or 'no FailureReason given'}")
    listed = " ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
    error_line(f"{len(requests) - len(missing)} of {len(requests)} request files answered (in {where}); "
               f"no answer for: {listed}")
    lines = data_log(run, job)
    if lines:
        error_line(f"the job's data log ({TRANSFORM_LOG_GROUP}, {job}/...):")
        for line in lines:
            print(f"  {line}", file=sys.stderr)
    raise DeployError(f"transform job {job} left {len(missing)} request files without an answer")


def data_log(run: Run, job: str) -> list[str]:
    """The job's data-log lines that say something (best effort: no log is no report, not a failure)."""
    logs = run.aws.client("logs")
    try:
        streams = [s["logStreamName"] for s in logs.describe_log_streams(
            logGroupName=TRANSFORM_LOG_GROUP, logStreamNamePrefix=f"{job}/")["logStreams"]]
        if not streams:
            return []
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=TRANSFORM_LOG_GROUP, logStreamNames=streams)
        messages = [event["message"] for page in pages for event in page["events"]]
    except (BotoCoreError, ClientError) as exc:
        info(f"the job's data log could not be read: {aws_error(exc)}")
        return []
    return [line for message in messages for line in message.splitlines()
            if line.strip() and not re.search(r": (Message:)?$", line)]
