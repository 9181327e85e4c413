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
    proxy = _Proxy(moto_url, updating_polls, work_dir or Path(tempfile.mkdtemp(prefix="rehearsal-transform-jobs-")))
    return Starlette(routes=[
        Route("/_rehearsal/calls", proxy.calls, methods=["GET", "DELETE"]),
        Route("/_rehearsal/faults", proxy.faults, methods=["POST"]),
        Route("/{path:path}", proxy.forward, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    ])


class _Proxy:
    """The recording proxy's routes: the calls list, fault injection, and every AWS call (answered
    here for the operations moto lacks, else by moto with the overlays laid over its answer)."""

    def __init__(self, moto_url: str, updating_polls: int, work_dir: Path) -> None:
        self.moto_url = moto_url
        self.state = State()
        self.endpoints = EndpointOverlays(updating_polls)
        self.http = httpx.AsyncClient(base_url=moto_url, timeout=60.0)
        self.transforms = TransformJobs(self.aws, work_dir)

    def aws(self, service: str, region: str) -> Any:
        """A boto3 client of ``service`` talking to moto directly."""
        return boto3.client(service, endpoint_url=self.moto_url, region_name=region, aws_access_key_id="rehearsal",
                            aws_secret_access_key="rehearsal")

    async def calls(self, request: Request) -> Response:
        """The calls recorded so far (DELETE: and forget them)."""
        with self.state.lock:
            if request.method == "DELETE":
                self.state.calls.clear()
            return JSONResponse(list(self.state.calls))

    async def faults(self, request: Request) -> Response:
        """Arm a fault for the next calls of one operation."""
        fault = await request.json()
        with self.state.lock:
            self.state.faults[fault["operation"]] = {"count": 1, **fault}
        return JSONResponse(fault)

    async def forward(self, request: Request) -> Response:
        """One AWS call: an armed fault, else our own answer or moto's; recorded either way."""
        body = await request.body()
        service, region = _scope(request.headers.get("authorization", ""))
        operation = _operation(request, body)
        record: dict[str, Any] = {"service": service, "operation": operation}
        fault = self._take_fault(operation)
        if isinstance(fault, Response):
            with self.state.lock:
                self.state.calls.append({**record, "status": fault.status_code})
            return fault
        document = json.loads(body) if service == "sagemaker" and body else {}
        response = self._answer_here(service, operation, document, region, fault)
        if response is None:
            response = await self._answer_by_moto(request, body, service, operation, document)
        if operation == "DescribeEndpoint" and response.status_code == 200:
            record["endpoint_status"] = json.loads(bytes(response.body))["EndpointStatus"]
        with self.state.lock:
            self.state.calls.append({**record, "status": response.status_code})
        return response

    def _take_fault(self, operation: str) -> Response | str | None:
        """Use up one armed fault of ``operation``: its AWS error, the deployment failure it names,
        or None (none armed, or this call is one of those it lets through)."""
        with self.state.lock:
            fault = self.state.faults.get(operation)
            if fault and fault["count"] > 0 and fault.get("skip", 0) > 0:
                fault["skip"] -= 1
                return None
            if not fault or fault["count"] <= 0:
                return None
            fault["count"] -= 1
            if "deployment_failure" in fault:
                return str(fault["deployment_failure"])
            return aws_error(int(fault.get("status", 400)), fault["code"], fault["message"])

    def _answer_here(self, service: str, operation: str, document: dict[str, Any], region: str,
                     deployment_failure: str | None) -> Response | None:
        """Our answer to the SageMaker operations moto lacks; None for every other call."""
        if service != "sagemaker":
            return None
        if operation == "UpdateEndpoint":
            return self.endpoints.update_endpoint(document, self.aws("sagemaker", region),
                                                  self.aws("application-autoscaling", region), deployment_failure)
        if operation == "UpdateEndpointWeightsAndCapacities":
            return self.endpoints.update_weights(document, self.aws("sagemaker", region))
        if operation == "CreateTransformJob":
            return self.transforms.create(document, region)
        return None

    async def _answer_by_moto(self, request: Request, body: bytes, service: str, operation: str,
                              document: dict[str, Any]) -> Response:
        """moto's answer to the call, with the overlays laid over a successful SageMaker one."""
        raw_path = request.scope["raw_path"].decode() + (f"?{request.url.query}" if request.url.query else "")
        upstream = await self.http.request(request.method, raw_path, content=body,
                                           headers={k: v for k, v in request.headers.items()
                                                    if k.lower() not in _HOP_HEADERS})
        response = Response(upstream.content, status_code=upstream.status_code,
                            headers={k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS})
        if service == "sagemaker" and upstream.status_code == 200:
            return self._follow(operation, document, upstream.content, response)
        return response

    def _follow(self, operation: str, document: dict[str, Any], content: bytes, response: Response) -> Response:
        """Lay the overlays over moto's answers (and forget a deleted endpoint's)."""
        if operation == "DeleteEndpoint":
            self.endpoints.forget(document.get("EndpointName", ""))
        elif operation == "DescribeEndpoint":
            return Response(self.endpoints.describe(document.get("EndpointName", ""), content), status_code=200,
                            media_type=JSON_11)
        elif operation == "DescribeTransformJob":
            return Response(self.transforms.describe(document.get("TransformJobName", ""), content), status_code=200,
                            media_type=JSON_11)
        return response


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
