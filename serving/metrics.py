"""Per-request metrics as CloudWatch Embedded Metric Format (EMF) log lines.

SageMaker sends the container's stdout to CloudWatch Logs (``/aws/sagemaker/Endpoints/<name>``);
CloudWatch turns every log event that is an EMF object into metrics, so these appear in the
configured namespace (default ``SamHolds``), dimension ``EndpointName``, beside SageMaker's
own ``ModelLatency`` and ``OverheadLatency`` in ``AWS/SageMaker``. A container that knows its
production variant (``SAM_VARIANT_NAME``, set by the deploy script) adds the dimension set
``EndpointName, VariantName``, so an A/B test compares latency and errors per variant while
the endpoint-wide series stay as they were.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

#: (metric name, unit, request fact it comes from)
STAGE_METRICS = (
    ("ImageDecodeLatency", "Milliseconds", "image_decode_ms"),
    ("EncoderLatency", "Milliseconds", "encoder_ms"),
    ("DecoderLatency", "Milliseconds", "decoder_ms"),
    ("PostprocessLatency", "Milliseconds", "postprocess_ms"),
    ("OutputEncodeLatency", "Milliseconds", "output_encode_ms"),
)

#: (metric name, shared tier lookup outcome it counts); errors: store down, stalled, garbage, foreign model.
SHARED_CACHE_METRICS = (("SharedCacheHits", "hit"), ("SharedCacheMisses", "miss"), ("SharedCacheErrors", "error"))

_emitter = logging.getLogger("sam.metrics")


def emf_record(namespace: str, endpoint: str, facts: dict[str, Any], total_ms: float, status: int,
               timestamp_ms: int | None = None, variant: str | None = None) -> dict[str, Any]:
    """The EMF object for one invocation (only the metrics the request produced); with ``variant``,
    every metric is also published per ``EndpointName, VariantName``."""
    metrics: list[dict[str, str]] = []
    record: dict[str, Any] = {"EndpointName": endpoint}
    dimensions = [["EndpointName"]]
    if variant is not None:
        record["VariantName"] = variant
        dimensions.append(["EndpointName", "VariantName"])

    def put(name: str, unit: str, value: float) -> None:
        metrics.append({"Name": name, "Unit": unit})
        record[name] = value

    put("TotalLatency", "Milliseconds", round(total_ms, 3))
    put("ClientErrors", "Count", 1 if 400 <= status < 500 else 0)
    put("ServerErrors", "Count", 1 if status >= 500 else 0)
    timings = facts.get("timings_ms", {})
    for name, unit, key in STAGE_METRICS:
        if key in timings:
            put(name, unit, timings[key])
    if "cache_hit" in facts:
        put("CacheHit", "Count", 1 if facts["cache_hit"] else 0)
        put("CacheMiss", "Count", 0 if facts["cache_hit"] else 1)
    if "shared_cache" in facts:  # the shared tier was asked: what it found
        for name, outcome in SHARED_CACHE_METRICS:
            put(name, "Count", 1 if facts["shared_cache"] == outcome else 0)
    if "pixels" in facts:
        put("ImagePixels", "Count", facts["pixels"])
    if "clicks" in facts:
        put("Clicks", "Count", facts["clicks"])
    record["_aws"] = {
        "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
        "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": dimensions, "Metrics": metrics}],
    }
    if "request_id" in facts:
        record["request_id"] = facts["request_id"]
    return record


def emit(record: dict[str, Any]) -> None:
    """Write one EMF object as its own stdout line (no log envelope around it)."""
    _emitter.info(json.dumps(record, separators=(",", ":")))


def configure_emitter() -> None:
    """A plain stdout handler for ``sam.metrics``: CloudWatch needs the bare JSON object."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _emitter.handlers[:] = [handler]
    _emitter.setLevel(logging.INFO)
    _emitter.propagate = False
