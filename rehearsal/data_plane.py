"""A local stand-in for SageMaker Runtime (the data plane) in front of running containers.

    python -m rehearsal.data_plane --container-url http://127.0.0.1:8080 --port 8081
    python -m rehearsal.data_plane --variant Primary=http://127.0.0.1:8080 \
        --variant Challenger=http://127.0.0.1:8082 --seed 1 --port 8081
    python -m rehearsal.data_plane --variant Primary=http://127.0.0.1:8080 \
        --variant Primary=http://127.0.0.1:8082 --port 8081     # one variant, two instances
    python -m rehearsal.data_plane --serve-model-dir models/vit_t --endpoint-name NAME --port 8081

Point boto3 or the AWS CLI at it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``; the control
plane (S3, SageMaker) is whatever ``AWS_ENDPOINT_URL`` names (a ``moto_server`` in tests).

Production variants: each ``--variant NAME=URL`` is that variant's container (an A/B test
runs two server processes); ``--container-url URL`` is one container serving every variant. A variant named more than once (or several ``--container-url``)
has that many instances: each invocation outside a session goes to a seeded random one of them, a
session stays on the instance that opened it (as SageMaker spreads requests over a variant's
instances), so a follow-up by ``image_id`` may reach an instance that never saw the photo.
``--serve-model-dir DIR --endpoint-name NAME`` starts the containers itself, as SageMaker would:
each variant's current instance count of ``inference.py serve`` processes, with the environment
its model was created with (``rehearsal.containers``).
Each invocation goes to a variant as SageMaker picks it (``rehearsal.routing``: the
``TargetVariant`` header, a stateful session's variant, else a seeded random pick by weight)
and the answer names it in ``x-Amzn-Invoked-Production-Variant``. The weights are the
endpoint's current ones (``DescribeEndpoint`` through ``AWS_ENDPOINT_URL``, read for every
invocation, so ``deploy_to_sagemaker.sh shift`` takes effect at once) with ``--routing
endpoint``, the default when ``AWS_ENDPOINT_URL`` is set; with ``--routing static`` they
are the ``--weight NAME=W`` values (default 1 each) and no AWS set-up is needed. An endpoint
SageMaker does not know is a ``ValidationError`` ("Endpoint NAME of account ... not found.").

- ``POST /endpoints/{name}/invocations``: forwarded to the container's ``/invocations`` with
  the SageMaker headers, under SageMaker's real-time limits and with its error shapes:
  a request body over 6 MiB (6,291,456 bytes) is refused with HTTP 413 "HTTP content
  length exceeded 6291456 bytes." (botocore reports code "413"); custom attributes over 1024
  characters with a 400 ``ValidationError``; an answer over 6 MiB, no answer within 60 s,
  and every container error come back as a 424 ``ModelError`` carrying the original status
  and message (as SageMaker does; the wording of the size error is ours).
- ``POST /endpoints/{name}/async-invocations``: answers 202 with the output and failure
  locations from the endpoint config's ``AsyncInferenceConfig``, then, in the background
  and at most ``MaxConcurrentInvocationsPerInstance`` at a time, reads the input from S3,
  invokes the container, and writes ``<id>.out`` or ``<id>-error.out`` to S3 (no 6 MiB limit).
- ``GET /ping``: 200 when every container's ``/ping`` is (a rehearsal convenience, not a
  SageMaker Runtime API), so ``sagemaker_client.py --endpoint-url ... --health`` works against
  the rehearsal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import boto3
import httpx
import uvicorn
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from holds_client.s3_uri import split_s3_uri
from rehearsal.containers import plan_variants, running_containers
from rehearsal.routing import RoutingError, Variant, VariantRouter

log = logging.getLogger("rehearsal.data_plane")

#: ``--container-url``: the one container that serves whichever variant is picked.
ANY_VARIANT = "*"
Routing = Literal["endpoint", "static"]

FORWARDED_HEADERS = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes", "x-amzn-sagemaker-session-id")
RETURNED_HEADERS = ("content-type", "x-amzn-sagemaker-custom-attributes", "x-amzn-sagemaker-new-session-id",
                    "x-amzn-sagemaker-closed-session-id")


@dataclass(frozen=True)
class Limits:
    """SageMaker's real-time limits: bytes of request and response body, seconds per invocation,
    characters of custom attributes."""

    max_request_bytes: int = 6 * 1024 * 1024
    max_response_bytes: int = 6 * 1024 * 1024
    invocation_timeout_s: float = 60.0
    max_custom_attributes: int = 1024


def _instances(containers: Mapping[str, str | Sequence[str]] | str) -> dict[str, list[str]]:
    """Variant name -> its instances' URLs (``ANY_VARIANT`` for a plain string: one container for all)."""
    if isinstance(containers, str):
        return {ANY_VARIANT: [containers]}
    return {name: [urls] if isinstance(urls, str) else list(urls) for name, urls in containers.items()}


def create_app(containers: Mapping[str, str | Sequence[str]] | str, limits: Limits = Limits(),
               routing: Routing = "static", weights: Mapping[str, float] | None = None,
               seed: int | None = None) -> Starlette:
    """The data-plane app: ``containers`` maps variant names to container URLs, one per instance
    (``ANY_VARIANT``: the containers of every variant; a plain string is one); ``weights`` are the
    static routing's."""
    plane = _DataPlane(_instances(containers), limits, routing, weights or {}, seed)
    return Starlette(routes=[
        Route("/endpoints/{name}/invocations", plane.invoke, methods=["POST"]),
        Route("/endpoints/{name}/async-invocations", plane.invoke_async, methods=["POST"]),
        Route("/ping", plane.ping, methods=["GET"]),
    ])


class _DataPlane:
    """The routes over one set of containers: variant name -> instance URLs, with an async client
    per instance for real-time calls and a blocking one for the background (asynchronous) calls."""

    def __init__(self, urls: dict[str, list[str]], limits: Limits, routing: Routing,
                 weights: Mapping[str, float], seed: int | None) -> None:
        self.urls = urls
        self.limits = limits
        self.routing = routing
        timeout = httpx.Timeout(limits.invocation_timeout_s, connect=5.0)
        self.http = {name: [httpx.AsyncClient(base_url=url, timeout=timeout) for url in instances]
                     for name, instances in urls.items()}
        self.background = {name: [httpx.Client(base_url=url, timeout=3600.0) for url in instances]
                           for name, instances in urls.items()}
        self.static = [Variant(name, weights.get(name, 1.0)) for name in urls if name != ANY_VARIANT]
        self.router = VariantRouter(seed)
        self.aws: dict[str, Any] = {}
        self.pools: dict[str, ThreadPoolExecutor] = {}

    def client(self, service: str) -> Any:
        """The boto3 client of ``service``, made on first use: real-time calls need no AWS set-up."""
        if service not in self.aws:
            self.aws[service] = boto3.client(service)
        return self.aws[service]

    def endpoint_variants(self, endpoint: str) -> list[Variant]:
        """The endpoint's variants and current weights (DescribeEndpoint), or the static ones."""
        if self.routing == "static":
            return self.static or [Variant("Primary")]
        try:
            described = self.client("sagemaker").describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:
            if "Could not find endpoint" in str(exc):
                account = self.client("sts").get_caller_identity()["Account"]
                raise RoutingError(f"Endpoint {endpoint} of account {account} not found.") from exc
            raise
        return [Variant(v["VariantName"], float(v.get("CurrentWeight", 1.0))) for v in described["ProductionVariants"]]

    async def route(self, endpoint: str, target: str | None = None,
                    session_id: str | None = None) -> tuple[str, str, int]:
        """(variant, key of its containers, instance index) for an invocation; raises RoutingError."""
        variants = await asyncio.to_thread(self.endpoint_variants, endpoint)
        variant = self.router.choose(endpoint, variants, target, session_id)
        if variant not in self.urls and ANY_VARIANT not in self.urls:
            raise RoutingError(f"the rehearsal has no container for variant {variant} of endpoint {endpoint}: start "
                               f"the data plane with --variant {variant}=URL")
        key = variant if variant in self.urls else ANY_VARIANT
        return variant, key, self.router.choose_instance(variant, len(self.urls[key]), session_id)

    async def invoke(self, request: Request) -> Response:
        """A real-time invocation, forwarded under SageMaker's limits."""
        endpoint = request.path_params["name"]
        body = await self._bounded_body(request)
        if isinstance(body, Response):
            return body
        attributes = request.headers.get("x-amzn-sagemaker-custom-attributes", "")
        if len(attributes) > self.limits.max_custom_attributes:
            return validation_error("1 validation error detected: Value at 'customAttributes' failed to satisfy "
                                    "constraint: Member must have length less than or equal to "
                                    f"{self.limits.max_custom_attributes}")
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        try:
            variant, container, instance = await self.route(endpoint,
                                                            request.headers.get("x-amzn-sagemaker-target-variant"),
                                                            request.headers.get("x-amzn-sagemaker-session-id"))
        except RoutingError as exc:
            return validation_error(exc.message)
        try:
            upstream = await self.http[container][instance].post("/invocations", content=body, headers=headers)
        except httpx.TimeoutException:
            return model_error(0, TIMEOUT_MESSAGE, endpoint)
        except httpx.TransportError as exc:
            return model_error(0, f"the container did not answer: {exc}", endpoint)
        return self._real_time_answer(upstream, endpoint, variant, instance)

    async def _bounded_body(self, request: Request) -> bytes | Response:
        """The request body, or SageMaker's 413 once it (declared or streamed) is over the limit."""
        limit = self.limits.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _too_large(limit)
        chunks, size = [], 0
        async for chunk in request.stream():  # a body without Content-Length stops at the limit too
            size += len(chunk)
            if size > limit:
                return _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def _real_time_answer(self, upstream: httpx.Response, endpoint: str, variant: str, instance: int) -> Response:
        """The container's answer as SageMaker returns it (errors as ``ModelError``), noting the
        sessions it opened or closed."""
        if upstream.status_code >= 400:
            return model_error(upstream.status_code, upstream.content.decode(errors="replace"), endpoint)
        if len(upstream.content) > self.limits.max_response_bytes:
            return model_error(0, f"Response payload size of {len(upstream.content)} bytes exceeds the maximum of "
                                  f"{self.limits.max_response_bytes} bytes for real-time inference", endpoint)
        returned = {k: v for k, v in upstream.headers.items() if k.lower() in RETURNED_HEADERS}
        returned["x-Amzn-Invoked-Production-Variant"] = variant
        opened = upstream.headers.get("x-amzn-sagemaker-new-session-id")
        if opened:
            self.router.session_opened(opened.split(";")[0].strip(), variant, instance)
        closed = upstream.headers.get("x-amzn-sagemaker-closed-session-id")
        if closed:
            self.router.session_closed(closed.strip())
        return Response(upstream.content, status_code=200, headers=returned)

    async def invoke_async(self, request: Request) -> Response:
        """An asynchronous invocation: 202 with the output locations, the work queued in the background."""
        endpoint = request.path_params["name"]
        input_location = request.headers.get("x-amzn-sagemaker-inputlocation")
        if not input_location:
            return validation_error("InputLocation is required")
        sagemaker = self.client("sagemaker")
        config_name = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
        async_config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name).get("AsyncInferenceConfig")
        if not async_config:
            return validation_error(f"endpoint {endpoint} is not an asynchronous endpoint")
        output_path = async_config["OutputConfig"]["S3OutputPath"].rstrip("/")
        failure_path = async_config["OutputConfig"].get("S3FailurePath", output_path).rstrip("/")
        inference_id = request.headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
        output = f"{output_path}/{inference_id}.out"
        failure = f"{failure_path}/{inference_id}-error.out"
        try:
            _, container, instance = await self.route(endpoint)
        except RoutingError as exc:
            return validation_error(exc.message)
        workers = int(async_config.get("ClientConfig", {}).get("MaxConcurrentInvocationsPerInstance", 4))
        pool = self.pools.setdefault(endpoint, ThreadPoolExecutor(max_workers=workers,
                                                                  thread_name_prefix=f"async-{endpoint}"))
        pool.submit(_process, self.background[container][instance], self.client("s3"), input_location,
                    _async_container_headers(request), output, failure)
        return JSONResponse({"InferenceId": inference_id}, status_code=202,
                            headers={"X-Amzn-SageMaker-OutputLocation": output,
                                     "X-Amzn-SageMaker-FailureLocation": failure})

    async def ping(self, request: Request) -> Response:
        """200 when every container's ``/ping`` is; else the first other status (503: no answer)."""
        for container in (instance for instances in self.http.values() for instance in instances):
            try:
                upstream = await container.get("/ping", timeout=2.0)
            except httpx.TransportError:
                return Response(status_code=503)
            if upstream.status_code != 200:
                return Response(status_code=upstream.status_code)
        return Response(status_code=200)


def _async_container_headers(request: Request) -> dict[str, str]:
    """The headers an asynchronous invocation sends the container, from its ``X-Amzn-SageMaker-*`` ones."""
    headers = {"content-type": request.headers.get("x-amzn-sagemaker-content-type", "application/octet-stream")}
    if request.headers.get("x-amzn-sagemaker-accept"):
        headers["accept"] = request.headers["x-amzn-sagemaker-accept"]
    if request.headers.get("x-amzn-sagemaker-custom-attributes"):
        headers["x-amzn-sagemaker-custom-attributes"] = request.headers["x-amzn-sagemaker-custom-attributes"]
    return headers


#: SageMaker's own text when a container misses the 60 s limit.
TIMEOUT_MESSAGE = ("Your invocation timed out while waiting for a response from container primary. Review the "
                   "latency metrics for each container in Amazon CloudWatch, resolve the issue, and try again.")


def model_error(status: int, message: str, endpoint: str) -> Response:
    """SageMaker's 424 ``ModelError``: the container's status (0: no usable answer) and message."""
    kind = "client" if 400 <= status < 500 else "server"
    return JSONResponse(
        {"ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL", "OriginalStatusCode": status, "OriginalMessage": message,
         "Message": f'Received {kind} error ({status}) from primary with message "{message}"',
         "LogStreamArn": f"arn:aws:logs:local:000000000000:log-group:/aws/sagemaker/Endpoints/{endpoint}"},
        status_code=424, headers={"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/"})


def validation_error(message: str) -> Response:
    """SageMaker's 400 ``ValidationError``."""
    return JSONResponse({"message": message}, status_code=400, headers={"x-amzn-ErrorType": "ValidationError"})


def _too_large(limit: int) -> Response:
    """What SageMaker answers to a body over its limit: HTTP 413 with no error type."""
    return JSONResponse({"message": f"HTTP content length exceeded {limit} bytes."}, status_code=413)


def _process(http: httpx.Client, s3: Any, input_location: str, headers: dict[str, str], output: str, failure: str) -> None:
    """One asynchronous invocation: S3 input -> container -> S3 output or failure object."""
    try:
        bucket, key = split_s3_uri(input_location)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        upstream = http.post("/invocations", content=body, headers=headers)
        target, payload = (output, upstream.content) if upstream.status_code < 400 else (failure, upstream.content)
    except Exception as exc:  # noqa: BLE001 - becomes the failure object, as SageMaker does
        target, payload = failure, json.dumps({"error": str(exc)}).encode()
    bucket, key = split_s3_uri(target)
    s3.put_object(Bucket=bucket, Key=key, Body=payload)
    log.info("async invocation done", extra={"input": input_location, "result": target})


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def _weight(text: str) -> tuple[str, float]:
    name, value = _pair(text)
    try:
        weight = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the weight of {name} must be a number, not {value!r}") from None
    if not weight >= 0:
        raise argparse.ArgumentTypeError(f"the weight of {name} must be >= 0")
    return name, weight


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    containers = parser.add_mutually_exclusive_group(required=True)
    containers.add_argument("--container-url", action="append",
                            help="a container for every production variant (repeat: one per instance)")
    containers.add_argument("--variant", type=_pair, action="append", metavar="NAME=URL",
                            help="a production variant's container (repeat for each variant, and for each "
                                 "instance of a variant)")
    containers.add_argument("--serve-model-dir", type=Path, metavar="DIR",
                            help="start the containers: each variant of --endpoint-name gets its current "
                                 "instance count of inference.py serve processes on DIR, with its model's "
                                 "environment (rehearsal.containers)")
    parser.add_argument("--endpoint-name", help="the endpoint whose variants --serve-model-dir runs")
    parser.add_argument("--container-log-dir", type=Path, default=Path("containers"),
                        help="the started containers' logs (default ./containers)")
    parser.add_argument("--routing", choices=["endpoint", "static"],
                        default="endpoint" if os.environ.get("AWS_ENDPOINT_URL") else "static",
                        help="weights from DescribeEndpoint (default when AWS_ENDPOINT_URL is set) or from --weight")
    parser.add_argument("--weight", type=_weight, action="append", default=[], metavar="NAME=W",
                        help="a variant's weight under --routing static (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weighted random pick (default 0)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    defaults = Limits()
    parser.add_argument("--max-request-bytes", type=int, default=defaults.max_request_bytes)
    parser.add_argument("--max-response-bytes", type=int, default=defaults.max_response_bytes)
    parser.add_argument("--invocation-timeout-s", type=float, default=defaults.invocation_timeout_s)
    return parser


def _given_containers(args: argparse.Namespace) -> dict[str, list[str]]:
    """Variant name -> instance URLs from --container-url / --variant."""
    variants: dict[str, list[str]] = {ANY_VARIANT: args.container_url} if args.container_url else {}
    for name, url in args.variant or []:
        variants.setdefault(name, []).append(url)
    return variants


def _serve(args: argparse.Namespace, variants: dict[str, list[str]]) -> None:
    limits = Limits(args.max_request_bytes, args.max_response_bytes, args.invocation_timeout_s)
    app = create_app(variants, limits, args.routing, dict(args.weight), args.seed)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.serve_model_dir is not None:
        if not args.endpoint_name or not os.environ.get("AWS_ENDPOINT_URL"):
            parser.error("--serve-model-dir needs --endpoint-name and AWS_ENDPOINT_URL (the control plane)")
        try:
            plans = plan_variants(boto3.client("sagemaker"), args.endpoint_name)
        except (ClientError, ValueError) as exc:
            parser.error(f"cannot plan the containers of {args.endpoint_name}: {exc}")
        # uvicorn re-raises the SIGTERM it caught once it has stopped: as SystemExit here, so the
        # containers are stopped on the way out instead of outliving the data plane.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        with running_containers(plans, args.serve_model_dir, args.container_log_dir) as variants:
            _check_weights(parser, args, variants)
            _serve(args, variants)
        return 0
    variants = _given_containers(args)
    _check_weights(parser, args, variants)
    _serve(args, variants)
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _check_weights(parser: argparse.ArgumentParser, args: argparse.Namespace, variants: Mapping[str, object]) -> None:
    unknown = [name for name, _ in args.weight if name not in variants or name == ANY_VARIANT]
    if unknown:
        parser.error(f"--weight names no --variant: {', '.join(unknown)}")


if __name__ == "__main__":
    sys.exit(main())
