"""The rehearsal as the tests run it: moto_server behind the control-plane stand-in, and the
data-plane stand-in in front of one container (or one per production variant).

Every piece is a real process on a free port; ``Rehearsal.deploy`` runs deploy_to_sagemaker.sh
against it exactly as a user would (AWS CLI, no mocks).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.integration.server import REPO, free_port

BUCKET = "sam-rehearsal-bucket"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def wait_http(url: str, process: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
    """Poll ``url`` until anything answers; fail when ``process`` exits first or at the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


@dataclass
class Rehearsal:
    """A running rehearsal: the AWS variables that point at it, and where its logs are."""

    env: dict[str, str]
    logs: Path
    work_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def control_url(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    @property
    def plane_url(self) -> str:
        return self.env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"]

    def client(self, service: str) -> Any:
        """A boto3 client of ``service`` through the control plane."""
        return boto3.client(service, endpoint_url=self.control_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def calls(self, clear: bool = False) -> list[dict[str, Any]]:
        """The AWS calls the control plane recorded (``clear``: and forget them)."""
        response = httpx.request("DELETE" if clear else "GET", self.control_url + "/_rehearsal/calls", timeout=10)
        return response.json()  # type: ignore[no-any-return]

    def deploy(self, tmp_path: Path, model_dir: Path, *args: str,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``deploy_to_sagemaker.sh`` with the test's settings (bucket, model, image, state under ``tmp_path``)."""
        environment = {**os.environ, **self.env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                       **(env or {})}
        settings = [f"S3_BUCKET={BUCKET}", f"MODEL_DIR={model_dir}",
                    "IMAGE_URI=123456789012.dkr.ecr.us-east-1.amazonaws.com/sam:cpu", "POLL_S=1",
                    f"PYTHON={sys.executable}", f"STATE_DIR={tmp_path / 'state'}", f"ARTIFACTS_DIR={tmp_path / 'artifacts'}"]
        return subprocess.run(["bash", str(REPO / "deploy_to_sagemaker.sh"), "--env-file", str(tmp_path / "none.env"),
                               *settings, *args], capture_output=True, text=True, env=environment, timeout=600,
                              check=False)


def _start(command: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, cwd=REPO, env=dict(env), stdout=log.open("wb"), stderr=subprocess.STDOUT)


@contextmanager
def rehearsal(logs: Path, containers: Mapping[str, str] | str, seed: int = 0) -> Iterator[Rehearsal]:
    """Start moto, the control plane and the data plane (``containers``: one URL for every variant,
    or variant name -> URL; those servers need not be up yet); create the bucket and the role."""
    logs.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    moto_port, control_port, plane_port = free_port(), free_port(), free_port()
    moto_url, control_url = f"http://127.0.0.1:{moto_port}", f"http://127.0.0.1:{control_port}"
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": control_url}
    variants = (["--container-url", containers] if isinstance(containers, str)
                else [arg for name, url in containers.items() for arg in ("--variant", f"{name}={url}")])
    stack = Rehearsal({**CREDENTIALS, "AWS_ENDPOINT_URL": control_url,
                       "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://127.0.0.1:{plane_port}"}, logs, logs / "jobs")
    try:
        moto = _start([str(bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], logs / "moto.log", env)
        stack.processes.append(moto)
        control = _start([sys.executable, "-m", "rehearsal.control_plane", "--moto-url", moto_url, "--port",
                          str(control_port), "--work-dir", str(stack.work_dir)], logs / "control.log", env)
        stack.processes.append(control)
        plane = _start([sys.executable, "-m", "rehearsal.data_plane", *variants, "--seed", str(seed), "--port",
                        str(plane_port)], logs / "plane.log", env)
        stack.processes.append(plane)
        wait_http(moto_url, moto)
        wait_http(f"{control_url}/_rehearsal/calls", control)
        wait_http(f"{stack.plane_url}/does-not-exist", plane)
        stack.client("s3").create_bucket(Bucket=BUCKET)
        stack.client("iam").create_role(RoleName="SageMakerExecutionRole",
                                        AssumeRolePolicyDocument='{"Version": "2012-10-17", "Statement": []}')
        yield stack
    finally:
        for process in reversed(stack.processes):
            process.terminate()
            process.wait(10)


def nothing_left(stack: Rehearsal) -> None:
    """No endpoint, config, model or scalable target remains."""
    sagemaker = stack.client("sagemaker")
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert sagemaker.list_endpoint_configs()["EndpointConfigs"] == []
    assert sagemaker.list_models()["Models"] == []
    scaling = stack.client("application-autoscaling")
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
