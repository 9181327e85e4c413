"""A local stand-in for SageMaker Runtime (the data plane) in front of a running container.

    python -m rehearsal.data_plane --container-url http://127.0.0.1:8080 --port 8081

Point boto3 or the AWS CLI at it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``; the control
plane (S3, SageMaker) is whatever ``AWS_ENDPOINT_URL`` names (a ``moto_server`` in tests).

- ``POST /endpoints/{name}/invocations``: forwarded to the container's ``/invocations`` with
  the SageMaker headers; container errors come back as SageMaker does it, a 424
  ``ModelError`` carrying the original status and message.
- ``POST /endpoints/{name}/async-invocations``: answers 202 with the output and failure
  locations from the endpoint config's ``AsyncInferenceConfig``, then, in the background
  and at most ``MaxConcurrentInvocationsPerInstance`` at a time, reads the input from S3,
  invokes the container, and writes ``<id>.out`` or ``<id>-error.out`` to S3.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("rehearsal.data_plane")

FORWARDED_HEADERS = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes", "x-amzn-sagemaker-session-id")
RETURNED_HEADERS = ("content-type", "x-amzn-sagemaker-custom-attributes", "x-amzn-sagemaker-new-session-id",
                    "x-amzn-sagemaker-closed-session-id")


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def create_app(container_url: str) -> Starlette:
    """The data-plane app forwarding to ``container_url``."""
    http = httpx.Client(base_url=container_url, timeout=70.0)
    sagemaker = boto3.client("sagemaker")
    s3 = boto3.client("s3")
    pools: dict[str, ThreadPoolExecutor] = {}

    def model_error(status: int, body: bytes, endpoint: str) -> Response:
        message = body.decode(errors="replace")
        kind = "client" if status < 500 else "server"
        return JSONResponse(
            {"ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL", "OriginalStatusCode": status, "OriginalMessage": message,
             "Message": f'Received {kind} error ({status}) from primary with message "{message}"',
             "LogStreamArn": f"arn:aws:logs:local:000000000000:log-group:/aws/sagemaker/Endpoints/{endpoint}"},
            status_code=424, headers={"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/"})

    async def invoke(request: Request) -> Response:
        endpoint = request.path_params["name"]
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        upstream = http.post("/invocations", content=await request.body(), headers=headers)
        if upstream.status_code >= 400:
            return model_error(upstream.status_code, upstream.content, endpoint)
        returned = {k: v for k, v in upstream.headers.items() if k.lower() in RETURNED_HEADERS}
        returned["x-Amzn-Invoked-Production-Variant"] = "Primary"
        return Response(upstream.content, status_code=200, headers=returned)

    async def invoke_async(request: Request) -> Response:
        endpoint = request.path_params["name"]
        input_location = request.headers.get("x-amzn-sagemaker-inputlocation")
        if not input_location:
            return JSONResponse({"message": "InputLocation is required"}, status_code=400,
                                headers={"x-amzn-ErrorType": "ValidationError"})
        config_name = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        async_config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name).get("AsyncInferenceConfig")
        if not async_config:
            return JSONResponse({"message": f"endpoint {endpoint} is not an asynchronous endpoint"}, status_code=400,
                                headers={"x-amzn-ErrorType": "ValidationError"})
        output_path = async_config["OutputConfig"]["S3OutputPath"].rstrip("/")
        failure_path = async_config["OutputConfig"].get("S3FailurePath", output_path).rstrip("/")
        inference_id = request.headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
        output = f"{output_path}/{inference_id}.out"
        failure = f"{failure_path}/{inference_id}-error.out"
        headers = {"content-type": request.headers.get("x-amzn-sagemaker-content-type", "application/octet-stream")}
        if request.headers.get("x-amzn-sagemaker-accept"):
            headers["accept"] = request.headers["x-amzn-sagemaker-accept"]
        if request.headers.get("x-amzn-sagemaker-custom-attributes"):
            headers["x-amzn-sagemaker-custom-attributes"] = request.headers["x-amzn-sagemaker-custom-attributes"]
        workers = int(async_config.get("ClientConfig", {}).get("MaxConcurrentInvocationsPerInstance", 4))
        pool = pools.setdefault(endpoint, ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"async-{endpoint}"))
        pool.submit(_process, http, s3, input_location, headers, output, failure)
        return JSONResponse({"InferenceId": inference_id}, status_code=202,
                            headers={"X-Amzn-SageMaker-OutputLocation": output,
                                     "X-Amzn-SageMaker-FailureLocation": failure})

    return Starlette(routes=[
        Route("/endpoints/{name}/invocations", invoke, methods=["POST"]),
        Route("/endpoints/{name}/async-invocations", invoke_async, methods=["POST"]),
    ])


def _process(http: httpx.Client, s3: Any, input_location: str, headers: dict[str, str], output: str, failure: str) -> None:
    """One asynchronous invocation: S3 input -> container -> S3 output or failure object."""
    try:
        bucket, key = _split_s3(input_location)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        upstream = http.post("/invocations", content=body, headers=headers)
        target, payload = (output, upstream.content) if upstream.status_code < 400 else (failure, upstream.content)
    except Exception as exc:  # noqa: BLE001 - becomes the failure object, as SageMaker does
        target, payload = failure, json.dumps({"error": str(exc)}).encode()
    bucket, key = _split_s3(target)
    s3.put_object(Bucket=bucket, Key=key, Body=payload)
    log.info("async invocation done", extra={"input": input_location, "result": target})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--container-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(args.container_url), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
