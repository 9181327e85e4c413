"""SageMaker Batch Transform, rehearsed: ``CreateTransformJob`` runs for real against moto's S3.

moto records a transform job and calls it ``Completed`` at once. Here ``CreateTransformJob`` is
checked as SageMaker checks it (the model exists; ``MaxPayloadInMB`` at most 100 and
``MaxConcurrentTransforms x MaxPayloadInMB`` at most 100; a unique name), recorded in moto, and
run in a thread the way AWS describes a job ("Custom Inference Code with Batch Transform"):

1. The model's ``ModelDataUrl`` is fetched from S3 and unpacked; a container starts on it
   (``inference.py serve`` of this checkout: there is no Docker engine here) with the model's
   and the job's ``Environment`` plus ``SAGEMAKER_BATCH=true`` and, only when the job sets
   them, ``SAGEMAKER_MAX_PAYLOAD_IN_MB``, ``SAGEMAKER_BATCH_STRATEGY``
   (``SINGLE_RECORD``/``MULTI_RECORD``) and ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS``.
2. Once ``/ping`` answers 200, ``GET /execution-parameters`` is asked; each setting is the
   job's value, else the container's, else SageMaker's default (1, ``MULTI_RECORD``, 6 MB);
   the job log says ``MaxConcurrentTransforms=.., MaxPayloadInMB=.., BatchStrategy=..``.
3. Every object under the ``S3Prefix`` input (``SplitType`` None: one object, one request) is
   sent to ``/invocations`` with the job's ``ContentType`` and ``Accept``, at most
   ``MaxConcurrentTransforms`` at a time; an answer is written to
   ``<S3OutputPath>/<key below the prefix>.out`` (``AssembleWith`` Line adds a newline).
   ``InvocationsMaxRetries`` (default 3) retries an invocation that got no answer or a 5xx.
4. A record that fails (a 4xx, a 5xx after the retries, an object over ``MaxPayloadInMB``)
   gets no ``.out``; the others still run (AWS: "the batch transform job processes the listed
   S3 objects and uploads only the output for successfully processed objects. If any object
   fails ... batch transform marks the job as failed"). The job ends ``Failed`` with
   ``FailureReason`` "ClientError: See job logs for more details." (``AlgorithmError: ...``
   when no failure was a 4xx); the data log (CloudWatch Logs group
   ``/aws/sagemaker/TransformJobs``, stream ``<job>/rehearsal-0/data-log``, in moto) has
   SageMaker's lines per failed object: ``<bucket>/<key>: ClientError: 400`` and the
   container's message. With no failure the job is ``Completed``.

``DescribeTransformJob`` shows the job's status as it runs (``InProgress`` until then).
The rehearsal runs one container for the job, whatever ``InstanceCount`` says.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import tarfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError
from starlette.responses import Response

from holds_client.s3_uri import split_s3_uri
from rehearsal.aws_json import aws_answer, aws_error
from serving.local_endpoint import LocalEndpoint, start_local_endpoint

log = logging.getLogger("rehearsal.transform_jobs")

LOG_GROUP = "/aws/sagemaker/TransformJobs"
MIB = 1 << 20
#: SageMaker's bounds and defaults (CreateTransformJob, ModelClientConfig, "How Containers Serve Requests").
MAX_PAYLOAD_MB = 100
DEFAULT_PAYLOAD_MB = 6
DEFAULT_TIMEOUT_S = 600
DEFAULT_RETRIES = 3
STRATEGY_ENV = {"SingleRecord": "SINGLE_RECORD", "MultiRecord": "MULTI_RECORD"}
CONTAINER_START_S = 600.0


@dataclass(frozen=True)
class JobSettings:
    """The settings a job runs with, after SageMaker's order of precedence."""

    max_concurrent: int
    max_payload_mb: int
    batch_strategy: str


@dataclass
class JobState:
    """A job's progress: status, failure reason, end time (epoch seconds) and the data log."""

    status: str = "InProgress"
    failure_reason: str = ""
    end_time: float | None = None
    log_lines: list[str] = field(default_factory=list)


def resolve_settings(document: dict[str, Any], container: dict[str, Any]) -> JobSettings:
    """The job's value, else the container's ``/execution-parameters`` value, else SageMaker's default."""
    concurrent = document.get("MaxConcurrentTransforms") or container.get("MaxConcurrentTransforms") or 1
    payload = document.get("MaxPayloadInMB")
    if payload is None:
        payload = container.get("MaxPayloadInMB", DEFAULT_PAYLOAD_MB)
    strategy = STRATEGY_ENV.get(document.get("BatchStrategy", ""), "") or container.get("BatchStrategy") or "MULTI_RECORD"
    return JobSettings(int(concurrent), int(payload), str(strategy))


def check_create(document: dict[str, Any]) -> str | None:
    """SageMaker's own checks of a CreateTransformJob request; the message, or None when it is valid."""
    payload = document.get("MaxPayloadInMB")
    concurrent = document.get("MaxConcurrentTransforms") or 0
    if payload is not None and payload > MAX_PAYLOAD_MB:
        return f"MaxPayloadInMB {payload} is over the maximum of {MAX_PAYLOAD_MB} MB."
    if payload and concurrent and payload * concurrent > MAX_PAYLOAD_MB:
        return (f"MaxConcurrentTransforms ({concurrent}) x MaxPayloadInMB ({payload}) must not exceed "
                f"{MAX_PAYLOAD_MB} MB.")
    source = document.get("TransformInput", {}).get("DataSource", {}).get("S3DataSource", {})
    if not str(source.get("S3Uri", "")).startswith("s3://"):
        return "TransformInput.DataSource.S3DataSource.S3Uri must be an s3:// URI."
    if not str(document.get("TransformOutput", {}).get("S3OutputPath", "")).startswith("s3://"):
        return "TransformOutput.S3OutputPath must be an s3:// URI."
    return None


class TransformJobs:
    """Transform jobs started through the control plane; ``aws(service, region)`` makes moto clients."""

    def __init__(self, aws: Callable[[str, str], Any], work_dir: Path) -> None:
        self._aws = aws
        self._work_dir = work_dir
        self._jobs: dict[str, JobState] = {}
        self._lock = threading.Lock()

    def create(self, document: dict[str, Any], region: str) -> Response:
        """Check, record in moto, and start the job in a thread."""
        name = document.get("TransformJobName", "")
        problem = check_create(document)
        if problem:
            return aws_error(400, "ValidationException", problem)
        sagemaker = self._aws("sagemaker", region)
        try:
            model = sagemaker.describe_model(ModelName=document.get("ModelName", ""))
        except ClientError as exc:
            return aws_error(400, "ValidationException", exc.response["Error"]["Message"])
        with self._lock:
            if name in self._jobs:
                return aws_error(400, "ResourceInUse", f"Job name must be unique within an AWS account and region, "
                                 f"and a job with this name already exists ({name})")
            self._jobs[name] = JobState()
        try:
            arn = sagemaker.create_transform_job(**document)["TransformJobArn"]
        except ClientError as exc:
            with self._lock:
                self._jobs.pop(name, None)
            return aws_error(400, exc.response["Error"]["Code"], exc.response["Error"]["Message"])
        threading.Thread(target=self._run, args=(name, document, model, region), name=f"transform-{name}",
                         daemon=True).start()
        return aws_answer({"TransformJobArn": arn})

    def describe(self, name: str, content: bytes) -> bytes:
        """moto's DescribeTransformJob answer with the job's real progress."""
        described = json.loads(content)
        with self._lock:
            state = self._jobs.get(name)
            if state is None:
                return content
            described["TransformJobStatus"] = state.status
            described["FailureReason"] = state.failure_reason
            if state.end_time is None:
                described.pop("TransformEndTime", None)
            else:
                described["TransformEndTime"] = state.end_time
        if not described["FailureReason"]:
            described.pop("FailureReason")
        return json.dumps(described, default=str).encode()

    # ---- the job itself ------------------------------------------------------------------------
    def _run(self, name: str, document: dict[str, Any], model: dict[str, Any], region: str) -> None:
        state = self._jobs[name]
        job_dir = self._work_dir / name
        job_dir.mkdir(parents=True, exist_ok=True)
        data_log = _DataLog(self._aws("logs", region), name, job_dir / "data-log.txt", state)
        s3 = self._aws("s3", region)
        container: LocalEndpoint | None = None
        try:
            try:
                container = self._start_container(s3, document, model, job_dir)
            except Exception as exc:  # noqa: BLE001 - the job fails with the reason, as SageMaker's does
                data_log.write(f"the model container did not start: {' '.join(str(exc).split())[:2000]}")
                self._finish(state, "AlgorithmError: the model container did not start; see job logs for more details.")
                return
            answer = httpx.get(container.url + "/execution-parameters", timeout=10)
            parameters = answer.json() if answer.status_code == 200 else {}
            settings = resolve_settings(document, parameters)
            data_log.write(f"MaxConcurrentTransforms={settings.max_concurrent}, MaxPayloadInMB="
                           f"{settings.max_payload_mb}, BatchStrategy={settings.batch_strategy}")
            failures = self._transform_all(s3, document, settings, container.url, data_log)
            if not failures:
                self._finish(state, "")
            else:
                kind = "ClientError" if "ClientError" in failures else "AlgorithmError"
                self._finish(state, f"{kind}: See job logs for more details.")
        except Exception as exc:  # never a lost job: it fails with the reason
            log.exception("transform job %s failed", name)
            data_log.write(f"the rehearsal could not run the job: {exc}")
            self._finish(state, f"InternalServerError: {exc}")
        finally:
            if container is not None:
                container.stop()
            shutil.rmtree(job_dir / "model", ignore_errors=True)

    def _finish(self, state: JobState, failure: str) -> None:
        with self._lock:
            state.status = "Failed" if failure else "Completed"
            state.failure_reason = failure
            state.end_time = time.time()

    def _start_container(self, s3: Any, document: dict[str, Any], model: dict[str, Any], job_dir: Path) -> LocalEndpoint:
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        bucket, key = split_s3_uri(container["ModelDataUrl"])
        archive = job_dir / "model.tar.gz"
        s3.download_file(bucket, key, str(archive))
        model_dir = job_dir / "model"
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir, filter="data")
        archive.unlink()
        env = {**container.get("Environment", {}), **document.get("Environment", {}), "SAGEMAKER_BATCH": "true"}
        if document.get("MaxPayloadInMB") is not None:
            env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(document["MaxPayloadInMB"])
        if document.get("BatchStrategy"):
            env["SAGEMAKER_BATCH_STRATEGY"] = STRATEGY_ENV[document["BatchStrategy"]]
        if document.get("MaxConcurrentTransforms"):
            env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(document["MaxConcurrentTransforms"])
        return start_local_endpoint(model_dir, job_dir / "container.log", env, deadline_s=CONTAINER_START_S)

    def _transform_all(self, s3: Any, document: dict[str, Any], settings: JobSettings, url: str,
                       data_log: _DataLog) -> list[str]:
        """Every object under the input prefix; returns the failure kinds (ClientError/AlgorithmError)."""
        in_bucket, prefix = split_s3_uri(document["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
        out_bucket, out_prefix = split_s3_uri(document["TransformOutput"]["S3OutputPath"].rstrip("/") + "/")
        objects = [item for page in s3.get_paginator("list_objects_v2").paginate(Bucket=in_bucket, Prefix=prefix)
                   for item in page.get("Contents", []) if not item["Key"].endswith("/")]
        client_config = document.get("ModelClientConfig", {})
        timeout_s = float(client_config.get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT_S))
        retries = int(client_config.get("InvocationsMaxRetries", DEFAULT_RETRIES))
        headers = {"Content-Type": document["TransformInput"].get("ContentType", "application/octet-stream")}
        if document["TransformOutput"].get("Accept"):
            headers["Accept"] = document["TransformOutput"]["Accept"]
        line_end = b"\n" if document["TransformOutput"].get("AssembleWith") == "Line" else b""
        gzipped = document["TransformInput"].get("CompressionType") == "Gzip"

        def transform(item: dict[str, Any]) -> str | None:
            where = f"{in_bucket}/{item['Key']}"
            if settings.max_payload_mb and item["Size"] > settings.max_payload_mb * MIB:
                data_log.record_failure(where, "ClientError", 413, f"the object is {item['Size']} bytes, over "
                                        f"MaxPayloadInMB ({settings.max_payload_mb} MB)")
                return "ClientError"
            body = s3.get_object(Bucket=in_bucket, Key=item["Key"])["Body"].read()
            if gzipped:
                body = gzip.decompress(body)
            status, message = 0, ""
            with httpx.Client(base_url=url, timeout=timeout_s) as http:
                for _ in range(1 + retries):
                    try:
                        answer = http.post("/invocations", content=body, headers=headers)
                    except httpx.HTTPError as exc:
                        status, message = 0, f"no answer from the container: {exc}"
                        continue
                    if answer.status_code < 400:
                        relative = item["Key"][len(prefix):].lstrip("/")
                        s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}{relative}.out", Body=answer.content + line_end)
                        return None
                    status, message = answer.status_code, answer.content.decode(errors="replace")
                    if status < 500:
                        break
            kind = "ClientError" if 400 <= status < 500 else "AlgorithmError"
            data_log.record_failure(where, kind, status, message)
            return kind

        with ThreadPoolExecutor(max_workers=max(1, settings.max_concurrent), thread_name_prefix="transform") as pool:
            return [kind for kind in pool.map(transform, objects) if kind is not None]


class _DataLog:
    """The job's data log: SageMaker's ``[sagemaker logs]`` lines, in moto's CloudWatch Logs and a file."""

    def __init__(self, logs: Any, job: str, path: Path, state: JobState) -> None:
        self._logs = logs
        self._stream = f"{job}/rehearsal-0/data-log"
        self._path = path
        self._state = state
        self._lock = threading.Lock()
        try:
            logs.create_log_group(logGroupName=LOG_GROUP)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=self._stream)

    def write(self, *lines: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        messages = [f"{stamp}:[sagemaker logs]: {line}" for line in lines]
        with self._lock:
            self._state.log_lines.extend(messages)
            with self._path.open("a") as file:
                file.write("".join(m + "\n" for m in messages))
            now_ms = int(time.time() * 1000)
            self._logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=self._stream,
                                      logEvents=[{"timestamp": now_ms, "message": m} for m in messages])

    def record_failure(self, where: str, kind: str, status: int, message: str) -> None:
        """A failed record, as SageMaker logs it: the status line, then the container's message."""
        self.write(f"{where}: {kind}: {status}", f"{where}: ", f"{where}: Message:",
                   f"{where}: {' '.join(message.split())[:2000]}")
