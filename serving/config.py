"""Server configuration: a frozen snapshot of the environment, read once at start-up."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from runtime.env_values import choice, non_negative_int, parse_bool, parse_bytes, positive, positive_float, read_env
from runtime.settings import RuntimeSettings

#: SageMaker's real-time request limit (6 MiB). Asynchronous endpoints allow up to 1 GB.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
#: SageMaker's real-time response limit (6 MiB). Asynchronous endpoints write answers of up to 1 GB to S3.
DEFAULT_MAX_RESPONSE_BYTES = 6 * 1024 * 1024
#: SageMaker's production variant names (botocore's VariantName pattern).
VARIANT_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", re.ASCII)

LogFormat = Literal["json", "text"]


_log_format: Callable[[str], LogFormat] = choice("json", "text")


def _variant_name(text: str) -> str | None:
    """A SageMaker production variant name (letters, digits and inner hyphens, at most 63)."""
    if not VARIANT_NAME_PATTERN.fullmatch(text.strip()):
        raise ValueError("a production variant name has letters, digits and inner hyphens, at most 63 characters")
    return text.strip()


@dataclass(frozen=True)
class ServerSettings:
    """HTTP server, request-limit, session and observability settings, plus the runtime's.

    ``batch_max_payload_bytes``: a batch transform job's MaxPayloadInMB in bytes (0 outside one);
    it is the body limit unless ``SAM_MAX_BODY_BYTES`` sets another.
    """

    model_dir: Path = Path("/opt/ml/model")
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_zip_entries: int = 16
    max_zip_member_bytes: int = 64 * 1024 * 1024
    request_timeout_s: float = 55.0
    body_timeout_s: float = 30.0
    header_timeout_s: float = 10.0
    send_timeout_s: float = 30.0
    max_connections: int = 1024
    graceful_timeout_s: float = 25.0
    worker_threads: int = 8
    max_queued_requests: int = 16
    session_ttl_s: float = 20 * 60.0
    max_sessions: int = 256
    log_format: LogFormat = "json"
    metrics_enabled: bool = True
    metrics_namespace: str = "SamHolds"
    endpoint_name: str = "sam-climbing-endpoint"
    variant_name: str | None = None
    batch_max_payload_bytes: int = 0
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        """Read SageMaker's variables (SM_MODEL_DIR, SAGEMAKER_BIND_TO_PORT, and in a batch transform
        SAGEMAKER_MAX_PAYLOAD_IN_MB) and ``SAM_*`` ones (which win)."""
        batch_payload_mib = read_env(environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", non_negative_int, 0)
        default_body = batch_payload_mib << 20 if batch_payload_mib else DEFAULT_MAX_BODY_BYTES
        return cls(
            model_dir=Path(environ.get("SM_MODEL_DIR") or "/opt/ml/model"),
            host=environ.get("SAM_HOST") or "0.0.0.0",
            port=read_env(environ, "SAGEMAKER_BIND_TO_PORT", positive(int), 8080),
            max_body_bytes=read_env(environ, "SAM_MAX_BODY_BYTES", positive(parse_bytes), default_body),
            max_response_bytes=read_env(environ, "SAM_MAX_RESPONSE_BYTES", positive(parse_bytes),
                                        DEFAULT_MAX_RESPONSE_BYTES),
            max_zip_entries=read_env(environ, "SAM_MAX_ZIP_ENTRIES", positive(int), 16),
            max_zip_member_bytes=read_env(environ, "SAM_MAX_ZIP_MEMBER_BYTES", positive(parse_bytes), 64 << 20),
            request_timeout_s=read_env(environ, "SAM_REQUEST_TIMEOUT_S", positive_float, 55.0),
            body_timeout_s=read_env(environ, "SAM_BODY_TIMEOUT_S", positive_float, 30.0),
            header_timeout_s=read_env(environ, "SAM_HEADER_TIMEOUT_S", positive_float, 10.0),
            send_timeout_s=read_env(environ, "SAM_SEND_TIMEOUT_S", positive_float, 30.0),
            max_connections=read_env(environ, "SAM_MAX_CONNECTIONS", positive(int), 1024),
            graceful_timeout_s=read_env(environ, "SAM_GRACEFUL_TIMEOUT_S", positive_float, 25.0),
            worker_threads=read_env(environ, "SAM_WORKER_THREADS", positive(int), 8),
            max_queued_requests=read_env(environ, "SAM_MAX_QUEUED_REQUESTS", non_negative_int, 16),
            session_ttl_s=read_env(environ, "SAM_SESSION_TTL_S", positive_float, 1200.0),
            max_sessions=read_env(environ, "SAM_MAX_SESSIONS", positive(int), 256),
            log_format=read_env(environ, "SAM_LOG_FORMAT", _log_format, "json"),
            metrics_enabled=read_env(environ, "SAM_METRICS", parse_bool, True),
            metrics_namespace=environ.get("SAM_METRICS_NAMESPACE") or "SamHolds",
            endpoint_name=environ.get("SAM_ENDPOINT_NAME") or "sam-climbing-endpoint",
            variant_name=read_env(environ, "SAM_VARIANT_NAME", _variant_name, None),
            batch_max_payload_bytes=batch_payload_mib << 20,
            runtime=RuntimeSettings.from_env(environ),
        )

