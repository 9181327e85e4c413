"""A local stand-in for the AWS control plane: ``moto_server`` behind a recording proxy that adds
what moto lacks for our deployments.

    python -m rehearsal.control_plane --moto-url http://127.0.0.1:5000 --port 5001

Point the AWS CLI or boto3 at it with ``AWS_ENDPOINT_URL``. Every request goes on to moto,
except that:

- ``sagemaker:UpdateEndpoint`` (moto answers HTTP 500) is implemented here, with SageMaker's
  rules: the endpoint must be ``InService``; the new config must exist; an update that
  changes the instance type of a variant registered with Application Auto Scaling fails
  (AWS: "deregister the variant as a scalable target" first); ``RetainAllVariantProperties``
  keeps each variant's current instance count and weight, otherwise the new config's
  initial values apply. The endpoint then answers ``Updating`` to the next
  ``--updating-polls`` ``DescribeEndpoint`` calls and ``InService`` after, with the new
  config and variants (an overlay on moto's answer).
- ``UpdateEndpointWeightsAndCapacities`` and ``DeleteEndpoint`` go to moto and keep the
  overlay in step.

Every call is recorded in order as ``{"service", "operation", "status"}`` (plus
``endpoint_status`` for ``DescribeEndpoint``): ``GET /_rehearsal/calls`` lists them,
``DELETE /_rehearsal/calls`` clears the list. ``POST /_rehearsal/faults`` with
``{"operation", "status", "code", "message", "count"}`` makes the next ``count`` calls of that
operation fail with that AWS error (to rehearse failures such as a denied ``DescribeEndpoint``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import boto3
import httpx
import uvicorn
from botocore.exceptions import ClientError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_RPC_PATH = re.compile(r"^/service/[^/]+/operation/([A-Za-z]+)$")
_HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "content-encoding"}
JSON_11 = "application/x-amz-json-1.1"


@dataclass
class Overlay:
    """An endpoint's state after an update, laid over moto's answer."""

    config_name: str
    variants: list[dict[str, Any]]
    updating_polls: int


@dataclass
class State:
    """Calls seen, injected faults and update overlays; guarded by one lock."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    overlays: dict[str, Overlay] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_app(moto_url: str, updating_polls: int = 2) -> Starlette:
    """The proxy app in front of ``moto_url``."""
    state = State()
    http = httpx.AsyncClient(base_url=moto_url, timeout=60.0)

    def aws(service: str, region: str) -> Any:
        return boto3.client(service, endpoint_url=moto_url, region_name=region, aws_access_key_id="rehearsal",
                            aws_secret_access_key="rehearsal")

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
        with state.lock:
            fault = state.faults.get(operation)
            if fault and fault["count"] > 0:
                fault["count"] -= 1
                response: Response = _aws_error(int(fault.get("status", 400)), fault["code"], fault["message"])
                state.calls.append({**record, "status": response.status_code})
                return response
        document = json.loads(body) if service == "sagemaker" and body else {}
        if service == "sagemaker" and operation == "UpdateEndpoint":
            response = update_endpoint(document, aws("sagemaker", region), aws("application-autoscaling", region))
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
        """Keep the overlays in step with moto's answers (and lay them over DescribeEndpoint)."""
        name = document.get("EndpointName", "")
        with state.lock:
            overlay = state.overlays.get(name)
            if operation == "DeleteEndpoint":
                state.overlays.pop(name, None)
            elif overlay is not None and operation == "UpdateEndpointWeightsAndCapacities":
                for change in document.get("DesiredWeightsAndCapacities", []):
                    for variant in overlay.variants:
                        if variant["VariantName"] == change["VariantName"] and "DesiredInstanceCount" in change:
                            variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = change["DesiredInstanceCount"]
            elif overlay is not None and operation == "DescribeEndpoint":
                described = json.loads(content)
                described["EndpointConfigName"] = overlay.config_name
                described["ProductionVariants"] = [dict(v) for v in overlay.variants]
                described["EndpointStatus"] = "Updating" if overlay.updating_polls > 0 else "InService"
                overlay.updating_polls -= 1
                return Response(json.dumps(described), status_code=200, media_type=JSON_11)
        return response

    def update_endpoint(document: dict[str, Any], sagemaker: Any, scaling: Any) -> Response:
        """SageMaker's UpdateEndpoint, as far as a rehearsal can tell (see the module docstring)."""
        name, config_name = document.get("EndpointName", ""), document.get("EndpointConfigName", "")
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
            new_config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        except ClientError as exc:
            return _aws_error(400, "ValidationException", exc.response["Error"]["Message"])
        with state.lock:
            overlay = state.overlays.get(name)
            if overlay is not None and overlay.updating_polls > 0:
                return _aws_error(400, "ValidationException", f'Cannot update in-progress endpoint "{described["EndpointArn"]}".')
            old_config_name = overlay.config_name if overlay else described["EndpointConfigName"]
            current = {v["VariantName"]: v for v in (overlay.variants if overlay else described["ProductionVariants"])}
        old_types = {v["VariantName"]: v.get("InstanceType") for v in
                     sagemaker.describe_endpoint_config(EndpointConfigName=old_config_name)["ProductionVariants"]}
        for variant in new_config["ProductionVariants"]:
            variant_name = variant["VariantName"]
            resource = f"endpoint/{name}/variant/{variant_name}"
            registered = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
            if registered["ScalableTargets"] and old_types.get(variant_name) not in (None, variant.get("InstanceType")):
                return _aws_error(400, "ValidationException",
                                  f"The variant {variant_name} of endpoint {name} is registered with Application Auto "
                                  f"Scaling ({resource}) and the update changes its instance type from "
                                  f"{old_types[variant_name]} to {variant.get('InstanceType')}: deregister the scalable "
                                  "target first, then register it again after the update.")
        retain = bool(document.get("RetainAllVariantProperties"))
        excluded = {p.get("VariantPropertyType") for p in document.get("ExcludeRetainedVariantProperties", [])}
        variants = []
        for variant in new_config["ProductionVariants"]:
            old = current.get(variant["VariantName"], {}) if retain else {}
            count = old.get("DesiredInstanceCount") if "DesiredInstanceCount" not in excluded else None
            weight = old.get("DesiredWeight") if "DesiredWeight" not in excluded else None
            count = count if count is not None else variant.get("InitialInstanceCount", 0)
            weight = weight if weight is not None else variant.get("InitialVariantWeight", 1.0)
            variants.append({"VariantName": variant["VariantName"], "CurrentInstanceCount": count,
                             "DesiredInstanceCount": count, "CurrentWeight": weight, "DesiredWeight": weight})
        with state.lock:
            state.overlays[name] = Overlay(config_name, variants, updating_polls)
        return Response(json.dumps({"EndpointArn": described["EndpointArn"]}), media_type=JSON_11)

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


def _aws_error(status: int, code: str, message: str) -> Response:
    """An error as the JSON protocols send it (botocore reads ``__type`` and ``message``)."""
    return Response(json.dumps({"__type": code, "message": message}), status_code=status, media_type=JSON_11,
                    headers={"x-amzn-ErrorType": code})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moto-url", required=True, help="the moto_server to forward to")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--updating-polls", type=int, default=2,
                        help="DescribeEndpoint calls that answer Updating after an UpdateEndpoint (default 2)")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.moto_url, args.updating_polls), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
