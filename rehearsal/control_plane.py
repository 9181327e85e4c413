"""A local stand-in for the AWS control plane: ``moto_server`` behind a recording proxy that adds
what moto lacks for our deployments.

    python -m rehearsal.control_plane --moto-url http://127.0.0.1:5000 --port 5001

Point the AWS CLI or boto3 at it with ``AWS_ENDPOINT_URL``. Every request goes on to moto,
except that:

- ``sagemaker:UpdateEndpoint`` and ``UpdateEndpointWeightsAndCapacities`` are implemented here
  with SageMaker's rules, and ``DescribeEndpoint`` shows their effect (``Updating`` for the next
  ``--updating-polls`` calls, then ``InService``): ``rehearsal.endpoint_updates``.
- ``CreateTransformJob`` runs the batch transform for real, against moto's S3, with a local
  container started on the model's ``model.tar.gz`` (job files under ``--work-dir``), and
  ``DescribeTransformJob`` shows its progress: ``rehearsal.transform_jobs``.

Every call is recorded in order as ``{"service", "operation", "status"}`` (plus
``endpoint_status`` for ``DescribeEndpoint``): ``GET /_rehearsal/calls`` lists them,
``DELETE /_rehearsal/calls`` clears the list. ``POST /_rehearsal/faults`` with
``{"operation", "status", "code", "message", "count"}`` makes the next ``count`` calls of that
operation fail with that AWS error (to rehearse failures such as a denied ``DescribeEndpoint``),
after letting the first ``skip`` (default 0) through, so any one call of a sequence can fail;
``{"operation": "UpdateEndpoint", "deployment_failure": REASON}`` instead lets the next update be
accepted and then fail its deployment and roll back (see ``rehearsal.endpoint_updates``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rehearsal.aws_json import JSON_11, aws_error
from rehearsal.endpoint_updates import EndpointOverlays
from rehearsal.transform_jobs import TransformJobs

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_RPC_PATH = re.compile(r"^/service/[^/]+/operation/([A-Za-z]+)$")
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "content-encoding"}


@dataclass
class State:
    """Calls seen and injected faults; guarded by one lock."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_app(moto_url: str, updating_polls: int = 2, work_dir: Path | None = None) -> Starlette:
    """The proxy app in front of ``moto_url``; transform jobs keep their files under ``work_dir``."""
    state = State()
    endpoints = EndpointOverlays(updating_polls)
    http = httpx.AsyncClient(base_url=moto_url, timeout=60.0)

    def aws(service: str, region: str) -> Any:
        return boto3.client(service, endpoint_url=moto_url, region_name=region, aws_access_key_id="rehearsal",
                            aws_secret_access_key="rehearsal")

    transforms = TransformJobs(aws, work_dir or Path(tempfile.mkdtemp(prefix="rehearsal-transform-jobs-")))

    async def calls(request: Request) -> Response:
        with state.lock:
            if request.method == "DELETE":
                state.calls.clear()
            return JSONResponse(list(state.calls))

    async def faults(request: Request) -> Response:
        fault = await request.json()
        with state.lock:
            state.faults[fault["operation"]] = {"count": 1, **fault}
        return JSONResponse(fault)

    async def proxy(request: Request) -> Response:
        body = await request.body()
        service, region = _scope(request.headers.get("authorization", ""))
        operation = _operation(request, body)
        record: dict[str, Any] = {"service": service, "operation": operation}
        deployment_failure: str | None = None
        with state.lock:
            fault = state.faults.get(operation)
            if fault and fault["count"] > 0 and fault.get("skip", 0) > 0:
                fault["skip"] -= 1
                fault = None
            if fault and fault["count"] > 0:
                fault["count"] -= 1
                if "deployment_failure" in fault:
                    deployment_failure = str(fault["deployment_failure"])
                else:
                    response: Response = aws_error(int(fault.get("status", 400)), fault["code"], fault["message"])
                    state.calls.append({**record, "status": response.status_code})
                    return response
        document = json.loads(body) if service == "sagemaker" and body else {}
        if service == "sagemaker" and operation == "UpdateEndpoint":
            response = endpoints.update_endpoint(document, aws("sagemaker", region), aws("application-autoscaling", region),
                                                 deployment_failure)
        elif service == "sagemaker" and operation == "UpdateEndpointWeightsAndCapacities":
            response = endpoints.update_weights(document, aws("sagemaker", region))
        elif service == "sagemaker" and operation == "CreateTransformJob":
            response = transforms.create(document, region)
        else:
            raw_path = request.scope["raw_path"].decode() + (f"?{request.url.query}" if request.url.query else "")
            upstream = await http.request(request.method, raw_path, content=body,
                                          headers={k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS})
            response = Response(upstream.content, status_code=upstream.status_code,
                                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS})
            if service == "sagemaker" and upstream.status_code == 200:
                response = follow(operation, document, upstream.content, response)
        if operation == "DescribeEndpoint" and response.status_code == 200:
            record["endpoint_status"] = json.loads(bytes(response.body))["EndpointStatus"]
        with state.lock:
            state.calls.append({**record, "status": response.status_code})
        return response

    def follow(operation: str, document: dict[str, Any], content: bytes, response: Response) -> Response:
        """Lay the overlays over moto's answers (and forget a deleted endpoint's)."""
        if operation == "DeleteEndpoint":
            endpoints.forget(document.get("EndpointName", ""))
        elif operation == "DescribeEndpoint":
            return Response(endpoints.describe(document.get("EndpointName", ""), content), status_code=200,
                            media_type=JSON_11)
        elif operation == "DescribeTransformJob":
            return Response(transforms.describe(document.get("TransformJobName", ""), content), status_code=200,
                            media_type=JSON_11)
        return response

    return Starlette(routes=[
        Route("/_rehearsal/calls", calls, methods=["GET", "DELETE"]),
        Route("/_rehearsal/faults", faults, methods=["POST"]),
        Route("/{path:path}", proxy, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    ])


def _scope(authorization: str) -> tuple[str, str]:
    """(service, region) from a SigV4 ``Authorization`` header; ("unsigned", us-east-1) without one."""
    match = _SCOPE.search(authorization)
    return (match.group(2), match.group(1)) if match else ("unsigned", "us-east-1")


def _operation(request: Request, body: bytes) -> str:
    """The AWS operation: JSON protocols name it in ``X-Amz-Target``, query protocols in ``Action``,
    RPC-v2 in the path; REST calls (S3) are recorded as ``METHOD /path``."""
    target = request.headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    rpc = _RPC_PATH.match(request.url.path)
    if rpc:
        return rpc.group(1)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        action = parse_qs(body.decode(errors="replace")).get("Action")
        if action:
            return action[0]
    return f"{request.method} {request.url.path}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moto-url", required=True, help="the moto_server to forward to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--updating-polls", type=int, default=2,
                        help="DescribeEndpoint calls that answer Updating after an endpoint update (default 2)")
    parser.add_argument("--work-dir", type=Path, help="transform jobs' files: data logs, container logs "
                        "(default: a new temporary directory)")
    args = parser.parse_args(argv)
    app = create_app(args.moto_url, args.updating_polls, args.work_dir)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
