"""Sessions, boto3, the AWS CLI and AWS's sagemaker-inference Transformer against our code."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from synthetic.test_images import synthetic_image
from tests.integration.server import start_server
from tests.reference import decode_mask, encode, in_process_mask

JPEG = encode(synthetic_image((480, 640), seed=41), "JPEG", quality=90)
JSON_BODY = json.dumps({"image_base64": base64.b64encode(JPEG).decode(), "points": [{"x": 100, "y": 200}]}).encode()
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _post(url: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(url + "/invocations", content=body, headers={"Content-Type": "application/json", **headers},
                      timeout=60)


def test_session_lifecycle_over_http(tiny_server) -> None:  # type: ignore[no-untyped-def]
    opened = _post(tiny_server.url, JSON_BODY, **{"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
    assert opened.status_code == 200
    session_id, expires = opened.headers["x-amzn-sagemaker-new-session-id"].split("; Expires=")
    assert len(session_id) == 32 and expires.endswith("Z") and "T" in expires
    follow = _post(tiny_server.url, json.dumps({"points": [{"x": 300, "y": 100}]}).encode(),
                   **{"X-Amzn-SageMaker-Session-Id": session_id})
    assert follow.status_code == 200 and follow.json()["cache_hit"]
    assert follow.json()["image_id"] == opened.json()["image_id"]
    closed = _post(tiny_server.url, json.dumps({"close_session": True}).encode(),
                   **{"X-Amzn-SageMaker-Session-Id": session_id})
    assert closed.status_code == 200 and closed.headers["x-amzn-sagemaker-closed-session-id"] == session_id
    gone = _post(tiny_server.url, json.dumps({"points": [{"x": 3, "y": 1}]}).encode(),
                 **{"X-Amzn-SageMaker-Session-Id": session_id})
    assert gone.status_code == 404 and gone.json()["error"] == "unknown_session"
    bad = _post(tiny_server.url, JSON_BODY, **{"X-Amzn-SageMaker-Session-Id": "not valid!"})
    assert bad.status_code == 400


def test_sessions_expire_with_a_distinct_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    server = start_server(tiny_model_dir, tmp_path / "s.log", env={"SAM_SESSION_TTL_S": "1"})
    try:
        opened = _post(server.url, JSON_BODY, **{"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
        session_id = opened.headers["x-amzn-sagemaker-new-session-id"].split(";")[0]
        time.sleep(1.3)
        expired = _post(server.url, json.dumps({"points": [{"x": 3, "y": 1}]}).encode(),
                        **{"X-Amzn-SageMaker-Session-Id": session_id})
        assert expired.status_code == 410 and expired.json()["error"] == "session_expired"
        assert httpx.get(server.url + "/stats").json()["cache"]["pinned_entries"] == 0
    finally:
        assert server.stop() == 0


def _runtime_client(url: str) -> Any:
    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}, read_timeout=70))


def test_boto3_invoke_endpoint_with_and_without_sessions(tiny_server, tiny_model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    client = _runtime_client(tiny_server.url)
    plain = client.invoke_endpoint(EndpointName="sam-climbing-endpoint", Body=JSON_BODY, ContentType="application/json")
    data = json.loads(plain["Body"].read())
    assert plain["ContentType"] == "application/json"
    assert np.array_equal(decode_mask(data["mask_image_base64"]), in_process_mask(tiny_model_dir, JPEG, [(100, 200)]))
    assert plain["CustomAttributes"].startswith("image_id=")
    opened = client.invoke_endpoint(EndpointName="sam-climbing-endpoint", Body=JSON_BODY,
                                    ContentType="application/json", SessionId="NEW_SESSION")
    session_id = opened["NewSessionId"].split(";")[0]
    follow = client.invoke_endpoint(EndpointName="sam-climbing-endpoint", SessionId=session_id,
                                    Body=json.dumps({"points": [{"x": 10, "y": 20}]}).encode(),
                                    ContentType="application/json", Accept="image/png")
    assert follow["ContentType"] == "image/png"
    assert np.array_equal(decode_mask(follow["Body"].read()), in_process_mask(tiny_model_dir, JPEG, [(10, 20)]))
    closed = client.invoke_endpoint(EndpointName="sam-climbing-endpoint", SessionId=session_id,
                                    Body=json.dumps({"close_session": True}).encode(), ContentType="application/json")
    assert closed["ClosedSessionId"] == session_id
    with pytest.raises(ClientError) as info:
        client.invoke_endpoint(EndpointName="sam-climbing-endpoint", Body=b"{}", ContentType="application/json")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "the request has no image" in str(info.value)


def test_aws_cli_invoke_endpoint(tiny_server, tiny_model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    request = tmp_path / "request.json"
    request.write_bytes(JSON_BODY)
    out = tmp_path / "out.json"
    aws = Path(sys.executable).with_name("aws")
    result = subprocess.run(
        [str(aws), "sagemaker-runtime", "invoke-endpoint", "--endpoint-name", "sam-climbing-endpoint",
         "--endpoint-url", tiny_server.url, "--content-type", "application/json",
         "--body", f"fileb://{request}", str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **AWS_ENV}, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ContentType"] == "application/json"
    served = decode_mask(json.loads(out.read_text())["mask_image_base64"])
    assert np.array_equal(served, in_process_mask(tiny_model_dir, JPEG, [(100, 200)]))


class _ToolkitContext:
    """The request context object that Multi Model Server hands to the toolkit's Transformer."""

    def __init__(self, model_dir: Path, headers: dict[str, str]) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self._headers = headers
        self.request_processor = [self]
        self.content_types: dict[int, str] = {}
        self.status: tuple[int, str] | None = None

    def get_request_properties(self) -> dict[str, str]:
        return self._headers

    def set_response_content_type(self, index: int, value: str) -> None:
        self.content_types[index] = value

    def set_response_status(self, code: int, phrase: str) -> None:
        self.status = (code, phrase)


def test_handlers_run_under_the_sagemaker_inference_transformer(tiny_model_dir: Path) -> None:
    script = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from sagemaker_inference.transformer import Transformer
from tests.integration.test_server_sessions_clients import _ToolkitContext, JSON_BODY
from pathlib import Path
transformer = Transformer()
ok = _ToolkitContext(Path({str(tiny_model_dir)!r}), {{"Content-Type": "application/json", "Accept": "application/json"}})
body = transformer.transform([{{"body": JSON_BODY}}], ok)[0]
bad = _ToolkitContext(Path({str(tiny_model_dir)!r}), {{"Content-Type": "application/json"}})
error = transformer.transform([{{"body": b'{{"points": "nope"}}'}}], bad)[0]
print(json.dumps({{"status": ok.status, "type": ok.content_types[0], "keys": sorted(json.loads(body)),
                  "mask": json.loads(body)["mask_image_base64"],
                  "error_status": bad.status, "error": error.splitlines()[0]}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "SAGEMAKER_PROGRAM": "inference.py"},
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] is None and report["type"] == "application/json"
    assert {"result_image_base64", "mask_image_base64", "image_id"} <= set(report["keys"])
    assert np.array_equal(decode_mask(report["mask"]), in_process_mask(tiny_model_dir, JPEG, [(100, 200)]))
    assert report["error_status"][0] == 400 and "points must be a list" in report["error"]
