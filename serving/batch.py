"""What the container tells SageMaker Batch Transform: ``GET /execution-parameters``.

Before its first ``/invocations`` a transform job asks the container for its preferred
settings; SageMaker uses, in this order, the values given in ``CreateTransformJob``, these,
and its defaults (1, ``MULTI_RECORD``, 6 MB). The JSON keys are ``MaxConcurrentTransforms``,
``BatchStrategy`` (``SINGLE_RECORD`` or ``MULTI_RECORD``) and ``MaxPayloadInMB`` (AWS
"Custom Inference Code with Batch Transform").

One request is one photo (the zip or JSON contract), so the strategy is ``SINGLE_RECORD``.
The payload is the container's own body limit in whole MiB (SageMaker's "MB" is the same
unit as its 6 MB real-time limit, 6,291,456 bytes), at least 1 and at most SageMaker's 100;
the concurrency is the worker threads, kept so that concurrency x payload stays within
SageMaker's 100 MB.
"""

from __future__ import annotations

from typing import Any

from serving.config import ServerSettings

#: SageMaker's largest MaxPayloadInMB, and its bound on MaxConcurrentTransforms x MaxPayloadInMB.
MAX_PAYLOAD_MB = 100
MIB = 1 << 20


def execution_parameters(settings: ServerSettings) -> dict[str, Any]:
    """The ``/execution-parameters`` answer for a server running with ``settings``."""
    payload_mb = max(1, min(MAX_PAYLOAD_MB, settings.max_body_bytes // MIB))
    concurrency = max(1, min(settings.worker_threads, MAX_PAYLOAD_MB // payload_mb))
    return {"MaxConcurrentTransforms": concurrency, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": payload_mb}
