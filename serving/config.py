"""Server configuration: a frozen snapshot of the environment, read once at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from runtime.env_values import (
    choice,
    env_field,
    format_bytes,
    non_negative_int,
    parse_bool,
    parse_bytes,
    positive,
    positive_float,
    read_field,
    read_fields,
)
from runtime.settings import RuntimeSettings

#: SageMaker's real-time request limit (6 MiB). Asynchronous endpoints allow up to 1 GB.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
#: SageMaker's real-time response limit (6 MiB). Asynchronous endpoints write answers of up to 1 GB to S3.
DEFAULT_MAX_RESPONSE_BYTES = 6 * 1024 * 1024
#: SageMaker's production variant names (botocore's VariantName pattern).
VARIANT_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", re.ASCII)

LogFormat = Literal["json", "text"]


_log_format: Callable[[str], LogFormat] = choice(*get_args(LogFormat))


def _variant_name(text: str) -> str | None:
    """A SageMaker production variant name (letters, digits and inner hyphens, at most 63)."""
    if not VARIANT_NAME_PATTERN.fullmatch(text.strip()):
        raise ValueError("a production variant name has letters, digits and inner hyphens, at most 63 characters")
    return text.strip()


def _path(text: str) -> Path:
    return Path(text)


@dataclass(frozen=True)
class ServerSettings:
    """HTTP server, request-limit, session and observability settings, plus the runtime's.

    Each field's default, variable, bound and meaning are declared once, here (``env_field``);
    ``from_env``, the README's tables and the OpenAPI document read them. A new setting is one line.
    ``batch_max_payload_mib``: a batch transform job's MaxPayloadInMB (0 outside one); it is the
    body limit unless ``SAM_MAX_BODY_BYTES`` sets another.
    """

    model_dir: Path = env_field(Path("/opt/ml/model"), "SM_MODEL_DIR", _path, doc="SageMaker's own: the model directory")
    host: str = env_field("0.0.0.0", "SAM_HOST", str, doc="the address the server listens on")
    port: int = env_field(8080, "SAGEMAKER_BIND_TO_PORT", positive(int),
                          doc="SageMaker's own: the port the server listens on")
    batch_max_payload_mib: int = env_field(
        0, "SAGEMAKER_MAX_PAYLOAD_IN_MB", non_negative_int, shown="none (outside a batch transform)",
        doc="SageMaker's own, in a batch transform: the job's MaxPayloadInMB, the request body limit unless "
            "`SAM_MAX_BODY_BYTES` is set")
    max_body_bytes: int = env_field(
        DEFAULT_MAX_BODY_BYTES, "SAM_MAX_BODY_BYTES", positive(parse_bytes),
        shown=f"{format_bytes(DEFAULT_MAX_BODY_BYTES)} (in a batch transform: the job's `SAGEMAKER_MAX_PAYLOAD_IN_MB`)",
        doc="request body limit (raise for asynchronous endpoints)")
    max_response_bytes: int = env_field(
        DEFAULT_MAX_RESPONSE_BYTES, "SAM_MAX_RESPONSE_BYTES", positive(parse_bytes),
        doc="answer limit (SageMaker's real-time response limit; raise for asynchronous endpoints, whose answers go "
            "to S3): larger answers get 413 `output_too_large` with a `max_side` that fits")
    max_zip_entries: int = env_field(16, "SAM_MAX_ZIP_ENTRIES", positive(int), doc="zip-bomb bound: entries of an archive")
    max_zip_member_bytes: int = env_field(64 << 20, "SAM_MAX_ZIP_MEMBER_BYTES", positive(parse_bytes),
                                          doc="zip-bomb bound: bytes of one member, checked while inflating")
    request_timeout_s: float = env_field(55.0, "SAM_REQUEST_TIMEOUT_S", positive_float,
                                         doc="seconds for the whole request: answer inside SageMaker's 60 s")
    body_timeout_s: float = env_field(30.0, "SAM_BODY_TIMEOUT_S", positive_float,
                                      doc="deadline for a request's body (stalled connections)")
    header_timeout_s: float = env_field(10.0, "SAM_HEADER_TIMEOUT_S", positive_float,
                                        doc="deadline for a request's head (stalled or idle connections)")
    send_timeout_s: float = env_field(30.0, "SAM_SEND_TIMEOUT_S", positive_float,
                                      doc="once an answer no longer fits the socket buffers, the client has this long "
                                          "to take it, or the connection is aborted (slow readers)")
    max_connections: int = env_field(1024, "SAM_MAX_CONNECTIONS", positive(int), doc="the cap on open connections")
    graceful_timeout_s: float = env_field(25.0, "SAM_GRACEFUL_TIMEOUT_S", positive_float,
                                          doc="drain on SIGTERM, before SageMaker's kill 30 s after it")
    worker_threads: int = env_field(8, "SAM_WORKER_THREADS", positive(int),
                                    doc="requests worked on at once (threads; a timed-out request keeps its thread "
                                        "until its work ends)")
    max_queued_requests: int = env_field(16, "SAM_MAX_QUEUED_REQUESTS", non_negative_int,
                                         doc="requests that may wait for a worker thread (beyond: 503 `overloaded`)")
    session_ttl_s: float = env_field(20 * 60.0, "SAM_SESSION_TTL_S", positive_float,
                                     doc="a stateful session's lifetime in seconds")
    max_sessions: int = env_field(256, "SAM_MAX_SESSIONS", positive(int), doc="stateful sessions open at once")
    log_format: LogFormat = env_field("json", "SAM_LOG_FORMAT", _log_format,
                                      doc="`json` (one object per line) or `text`")
    metrics_enabled: bool = env_field(True, "SAM_METRICS", parse_bool, doc="whether the EMF metrics are written")
    metrics_namespace: str = env_field("SamHolds", "SAM_METRICS_NAMESPACE", str, doc="the EMF metrics' namespace")
    endpoint_name: str = env_field("sam-climbing-endpoint", "SAM_ENDPOINT_NAME", str,
                                   doc="the EMF metrics' `EndpointName` dimension (the deploy script sets it)")
    variant_name: str | None = env_field(None, "SAM_VARIANT_NAME", _variant_name,
                                         doc="the EMF metrics' `VariantName` dimension, written when set (the deploy "
                                             "script sets it)")
    warm_requests: bool = env_field(False, "SAM_WARM_REQUESTS", parse_bool,
                                    doc="every invocation is a warm request (store the photo's embedding in the "
                                        "shared tier, answer a report line): for `batch --warm` transform jobs")
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    @property
    def batch_max_payload_bytes(self) -> int:
        """A batch transform job's MaxPayloadInMB in bytes (0 outside one)."""
        return self.batch_max_payload_mib << 20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        """Read SageMaker's variables (SM_MODEL_DIR, SAGEMAKER_BIND_TO_PORT, and in a batch transform
        SAGEMAKER_MAX_PAYLOAD_IN_MB) and ``SAM_*`` ones (which win)."""
        batch_payload_mib = read_field(cls, environ, "batch_max_payload_mib")
        defaults = {"max_body_bytes": batch_payload_mib << 20} if batch_payload_mib else {}
        return cls(**read_fields(cls, environ, defaults), runtime=RuntimeSettings.from_env(environ))
