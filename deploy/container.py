"""The container's environment: one table of (variable, value) rules, one function that applies
them. Another container setting is one more row in ``CONTAINER_ENVIRONMENT``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deploy import hosts
from deploy.settings import Settings
from deploy.variants import Variant

#: The kinds of model a deploy makes: an endpoint's (real-time or async) or a batch transform job's.
Purpose = str  # "realtime" | "async" | "batch"


@dataclass(frozen=True)
class Job:
    """What a model is made for: the deploy's settings, the variant, the purpose and its instance type."""

    settings: Settings
    variant: Variant
    purpose: Purpose
    instance_type: str
    image_variant: str


def _max_body(job: Job) -> str:
    if job.purpose == "batch":  # the container takes what the job's MaxPayloadInMB lets through
        return f"{job.settings.batch.max_payload_mb}MiB"
    return job.settings.sam_max_body_bytes or ("256MiB" if job.purpose == "async" else "6MiB")


#: The answer limit where answers go to S3 (async, batch): SageMaker takes up to 1 GB there; this
#: bounds what one answer holds in the container's memory. Real-time keeps the container's 6 MiB.
S3_ANSWER_MAX_BYTES = "256MiB"


def _max_response(job: Job) -> str | None:
    return None if job.purpose == "realtime" else S3_ANSWER_MAX_BYTES


def _batch_request_timeout(job: Job) -> str | None:
    """A batch record's deadline sits under the job's invocation timeout."""
    if job.purpose != "batch":
        return None
    timeout_s = job.settings.batch.invocation_timeout_s
    return str(timeout_s - 5 if timeout_s > 10 else timeout_s)


#: Container variable -> its value for a job (None: not set). Order is the environment's order.
CONTAINER_ENVIRONMENT: tuple[tuple[str, Callable[[Job], str | None]], ...] = (
    ("SAM_CACHE_BYTES", lambda job: job.variant.sam_cache_bytes or hosts.cache_budget(job.instance_type,
                                                                                       job.image_variant)),
    ("SAM_MAX_BODY_BYTES", _max_body),
    ("SAM_MAX_RESPONSE_BYTES", _max_response),
    ("SAM_REQUEST_TIMEOUT_S", _batch_request_timeout),
    ("SAM_LOG_FORMAT", lambda job: "json"),
    ("SAM_METRICS", lambda job: "false" if job.purpose == "batch" else None),
    ("SAM_ENDPOINT_NAME", lambda job: None if job.purpose == "batch" else job.settings.endpoint_name),
    ("SAM_VARIANT_NAME", lambda job: None if job.purpose == "batch" else job.variant.name),
    ("SAM_SHARED_CACHE_URL", lambda job: job.settings.network.shared_cache_url or None),
    ("SAM_SHARED_CACHE_SECRET_ID", lambda job: job.settings.network.shared_cache_secret_id or None),
)


def container_environment(job: Job) -> dict[str, str]:
    """The ``Environment`` of the model's container."""
    environment = {}
    for name, rule in CONTAINER_ENVIRONMENT:
        value = rule(job)
        if value is not None:
            environment[name] = value
    return environment
