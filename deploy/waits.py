"""Waits with deadlines that see what AWS's waiters miss: an update that comes back InService on
the previous config (a failed UpdateEndpoint: "the status is InService but update operation
fails"), RollingBack, and UpdateRollbackFailed (a mix of old and new instances)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy.aws import DeployError, aws_error, error_line, info
from deploy.run import Run

FAILED = ("Failed", "UpdateRollbackFailed")
SETTLING = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
TRANSFORM_DONE = ("Completed", "Failed", "Stopped")


class NotInService(DeployError):
    """The endpoint did not reach InService on the config asked for (the reason was printed)."""


def logs_of(endpoint: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def wait_for_endpoint(run: Run, expected_config: str = "") -> dict[str, Any]:
    """Poll until InService (on ``expected_config`` when given) and return the description; raise
    NotInService when the endpoint failed, vanished, rolled back, or the deadline passed."""
    name, deadline = run.endpoint, run.clock() + run.settings.wait_timeout_s
    rolled_back = False
    while True:
        described = run.aws.describe_endpoint(name)
        status = described["EndpointStatus"] if described else "Missing"
        if status == "InService" and described is not None:
            serving = described.get("EndpointConfigName", "")
            if not rolled_back and (not expected_config or serving == expected_config):
                info(f"endpoint {name} is InService")
                return described
            _fail(name, f"rolled back to its previous config ({serving})", described)
        if status in FAILED or described is None:
            _fail(name, status, described)
        rolled_back = rolled_back or status == "RollingBack"
        if run.clock() >= deadline:
            _fail(name, f"still {status} after {run.settings.wait_timeout_s:g}s", None)
        info(f"endpoint {name} is {status}; waiting")
        run.sleep(run.settings.poll_s)


def _fail(name: str, status: str, described: dict[str, Any] | None) -> None:
    reason = (described or {}).get("FailureReason") or "no FailureReason given"
    message = f"endpoint {name} is {status}: {reason} (logs: {logs_of(name)})"
    error_line(message)
    raise NotInService(message)


def wait_until_settled(run: Run) -> str:
    """Poll (until the deadline) while the endpoint is creating, updating or rolling back; its status then."""
    deadline = run.clock() + run.settings.wait_timeout_s
    while True:
        described = run.aws.describe_endpoint(run.endpoint)
        status = described["EndpointStatus"] if described else "Missing"
        if status not in SETTLING or run.clock() >= deadline:
            return str(status)
        info(f"endpoint {run.endpoint} is {status}; waiting before autoscaling is registered again")
        run.sleep(run.settings.poll_s)


def wait_for_transform_job(run: Run, job: str) -> str:
    """Poll until the job is Completed, Failed or Stopped; its status. Past the deadline the job keeps running."""
    deadline = run.clock() + run.settings.wait_timeout_s
    while True:
        try:
            status = run.aws.client("sagemaker").describe_transform_job(TransformJobName=job)["TransformJobStatus"]
        except (BotoCoreError, ClientError) as exc:
            raise DeployError(f"cannot describe transform job {job}: {aws_error(exc)}") from None
        if status in TRANSFORM_DONE:
            return str(status)
        if run.clock() >= deadline:
            raise DeployError(f"transform job {job} still {status} after {run.settings.wait_timeout_s:g}s (it keeps "
                              f"running; watch it with: aws sagemaker describe-transform-job --transform-job-name {job})")
        info(f"transform job {job} is {status}; waiting")
        run.sleep(run.settings.poll_s)
