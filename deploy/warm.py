"""Pre-warming the shared embedding tier: `batch --warm INPUT_S3_PREFIX OUTPUT_S3_PREFIX`.

Every file under the input prefix is a photo (JPEG, PNG or WebP; the container reads each file's
format from its bytes). A transform job sends each one as a raw image body to a container whose
job ``Environment`` sets ``SAM_WARM_REQUESTS=true`` (CreateTransformJob has no custom attributes),
so every invocation computes the photo's embedding and stores it in the shared tier (the model's
``SAM_SHARED_CACHE_URL``, from SHARED_CACHE_URL), decoding nothing. Each answer,
OUTPUT_S3_PREFIX<path below the input prefix>.out, is the photo's warm report line (README,
"Pre-warming the shared tier"). The tool reads them back and prints the report as the last line
of stdout, one JSON object (shown here over several lines)::

    {"job": "...", "photos": [{"key": "...", "image_id": "...", "outcome": "stored", "stored_bytes": N}, ...],
     "totals": {"photos": 3, "stored": 2, "already_present": 0, "refused": {"invalid_image": 1},
                "stored_bytes": N}}

A photo the job left without an answer (over MaxPayloadInMB, a 5xx after the retries) is refused
with reason ``no_answer``, and the job's data log is printed as ``batch`` prints it. The exit status
is 0 when every photo has a line, refused ones included (a refusal is an answer: the report says
why); 1 when any photo has none.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy.aws import DeployError, aws_error, error_line, info
from deploy.batch import TRANSFORM_LOG_GROUP, JobKind, TransformJob, data_log, list_objects, start_transform_job
from deploy.run import Run

#: Photo file extensions and the ContentType a job of only those sends.
IMAGE_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
#: What a warm job's container is told (serving.config's SAM_WARM_REQUESTS): every invocation warms.
WARM_ENVIRONMENT = {"SAM_WARM_REQUESTS": "true"}
WARM_ACCEPT = "application/json"
OUTCOMES = ("stored", "already_present", "refused")


def photo_content_type(run: Run, keys: list[str]) -> str:
    """BATCH_CONTENT_TYPE, else the one image type of the photos' extensions, else image/jpeg (said so)."""
    if run.settings.batch.content_type:
        return run.settings.batch.content_type
    kinds = {IMAGE_TYPES.get(key.rsplit("/", 1)[-1].rpartition(".")[2].lower()) for key in keys}
    if len(kinds) == 1 and None not in kinds:
        return str(kinds.pop())
    info("the files are not all of one image type: the job sends image/jpeg, and the container reads each file's "
         "own format from its bytes (a file that is no photo is refused as invalid_image)")
    return "image/jpeg"


def cmd_batch_warm(run: Run, source: str, target: str) -> None:
    if not run.settings.network.shared_cache_url:
        raise DeployError("batch --warm fills the shared embedding tier, and none is set: set SHARED_CACHE_URL (with "
                          "VPC_SUBNET_IDS and VPC_SECURITY_GROUP_IDS; README_SAGEMAKER.md, 'Several instances')")
    job = start_transform_job(run, source, target, JobKind(photo_content_type, WARM_ACCEPT, WARM_ENVIRONMENT,
                                                           "photos"))
    if job is None:
        return
    report = warm_report(run, job)
    print(json.dumps(report), flush=True)  # one line: the last of stdout
    totals = report["totals"]
    refused = ", ".join(f"{reason} {count}" for reason, count in sorted(totals["refused"].items())) or "none"
    info(f"warm job {job.name}: {totals['photos']} photos: {totals['stored']} stored ({totals['stored_bytes']} "
         f"bytes), {totals['already_present']} already present, refused: {refused}")
    unanswered = [line["key"] for line in report["photos"] if line.get("reason") == "no_answer"]
    if unanswered:
        _print_data_log(run, job.name)
        raise DeployError(f"transform job {job.name} left {len(unanswered)} photos without an answer: "
                          f"{' '.join(unanswered[:20])}")


def warm_report(run: Run, job: TransformJob) -> dict[str, Any]:
    """Every photo's report line (read back from its .out) and the totals."""
    out_bucket, out_prefix = job.target
    outputs = set(list_objects(run, out_bucket, out_prefix))
    photos = []
    for key in sorted(job.requests):
        output = f"{out_prefix}{key[len(job.source[1]):]}.out"
        line = _read_line(run, out_bucket, output) if output in outputs else _no_answer("the job wrote no answer")
        photos.append({"key": key, **line})
    return {"job": job.name, "photos": photos, "totals": totals_of(photos)}


def totals_of(photos: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by outcome (refused ones by reason) and the bytes stored."""
    outcomes = Counter(str(line["outcome"]) for line in photos)
    reasons = Counter(str(line.get("reason")) for line in photos if line["outcome"] == "refused")
    return {"photos": len(photos), "stored": outcomes["stored"], "already_present": outcomes["already_present"],
            "refused": dict(sorted(reasons.items())),
            "stored_bytes": sum(int(line.get("stored_bytes", 0)) for line in photos)}


def _read_line(run: Run, bucket: str, key: str) -> dict[str, Any]:
    """The warm line in one .out object (its outcome checked); an unreadable one is refused ``bad_answer``."""
    try:
        body = run.aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"cannot read s3://{bucket}/{key}: {aws_error(exc)}") from None
    try:
        line = json.loads(body)
    except ValueError:
        line = None
    if not isinstance(line, dict) or line.get("outcome") not in OUTCOMES:
        return {"outcome": "refused", "reason": "bad_answer", "stored_bytes": 0,
                "message": f"s3://{bucket}/{key} is not a warm report line (was the job's container a warm one?)"}
    keep = ("image_id", "outcome", "reason", "status", "message", "stored_bytes", "encoder_ran")
    return {name: line[name] for name in keep if name in line}


def _no_answer(message: str) -> dict[str, Any]:
    return {"outcome": "refused", "reason": "no_answer", "stored_bytes": 0, "message": message}


def _print_data_log(run: Run, job: str) -> None:
    lines = data_log(run, job)
    if lines:
        error_line(f"the job's data log ({TRANSFORM_LOG_GROUP}, {job}/...):")
        for line in lines:
            print(f"  {line}", file=sys.stderr)
