"""The AWS side of a run: boto3 clients from the normal credential chain, mutating calls that a
dry run prints (as the equivalent AWS CLI command) instead of making, and the errors a run stops with."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Any

import boto3
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

NO_CREDENTIALS = "no usable AWS credentials (aws configure, or AWS_PROFILE / AWS_ACCESS_KEY_ID)"
#: Characters bash's ``printf %q`` escapes with a backslash.
_BASH_SPECIAL = set(" !\"$&'()*;<>?[\\]^`{|},")


class DeployError(Exception):
    """A run stops: the message (one line) says what failed and what was left."""


def info(message: str) -> None:
    print(f"[deploy] {message}", file=sys.stderr, flush=True)


def error_line(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def aws_error(exc: Exception) -> str:
    """An AWS failure in one line: botocore's "An error occurred (Code) when calling the Op operation: Message"."""
    return " ".join(str(exc).split())


def bash_quote(word: str) -> str:
    """``word`` as bash's ``printf %q`` writes it (the dry run's lines read as before)."""
    if word == "":
        return "''"
    if any(ch in word for ch in "\n\t\r"):
        return "$'" + word.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\t", "\\t") \
            .replace("\r", "\\r") + "'"
    quoted = "".join(f"\\{ch}" if ch in _BASH_SPECIAL else ch for ch in word)
    return f"\\{quoted}" if quoted[0] in "~#" else quoted


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def _flat(item: Any, most_keys: int) -> bool:
    """A structure the CLI's shorthand writes plainly: a dict of at most ``most_keys`` scalars."""
    return isinstance(item, dict) and 0 < len(item) <= most_keys and all(
        isinstance(v, (str, int, float)) and not (isinstance(v, str) and ("," in v or "=" in v)) for v in item.values())


def _cli_value(value: Any) -> list[str]:
    """A parameter's words: scalars as they are; flat structures, and lists of small ones, in the
    CLI's shorthand (Key=k,Value=v ...); anything else as compact JSON."""
    if isinstance(value, list) and value and all(_flat(item, 2) for item in value):
        return [",".join(f"{k}={_scalar(v)}" for k, v in item.items()) for item in value]
    if _flat(value, 8):
        return [",".join(f"{k}={_scalar(v)}" for k, v in value.items())]
    if isinstance(value, (dict, list)):
        return [json.dumps(value, separators=(",", ":"))]
    return [_scalar(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cli_line(service: str, operation: str, params: Mapping[str, Any]) -> str:
    """The AWS CLI command that makes the same request, quoted for bash."""
    words = ["aws", service, _kebab(operation)]
    for name, value in params.items():
        if value is True:
            words.append(f"--{_kebab(name)}")
        else:
            words += [f"--{_kebab(name)}", *_cli_value(value)]
    return " ".join(bash_quote(word) for word in words)


class Aws:
    """boto3 clients of one session; ``change`` makes a mutating call, or prints it under a dry run."""

    def __init__(self, session: boto3.session.Session, dry_run: bool, clients: Mapping[str, Any] | None = None) -> None:
        """``clients``: service -> client to use instead of the session's (tests pass stubbed ones)."""
        self.session = session
        self.dry_run = dry_run
        self._clients: dict[str, Any] = dict(clients or {})

    @classmethod
    def from_environment(cls, region: str, dry_run: bool) -> Aws:
        return cls(boto3.session.Session(region_name=region), dry_run)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def change(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """Make the call ``operation`` (CamelCase) of ``service``; a dry run prints it and returns {}."""
        if self.dry_run:
            dry_run_line(cli_line(service, operation, params))
            return {}
        method = getattr(self.client(service), xform_name(operation))
        return method(**params)  # type: ignore[no-any-return]

    def account_id(self) -> str:
        try:
            account = self.client("sts").get_caller_identity()["Account"]
        except (BotoCoreError, ClientError):
            raise DeployError(NO_CREDENTIALS) from None
        if not account:
            raise DeployError(NO_CREDENTIALS)
        return str(account)

    def describe_endpoint(self, name: str) -> dict[str, Any] | None:
        """DescribeEndpoint's answer, or None when SageMaker says there is no such endpoint; any
        other failure (credentials, permissions, network) stops the run with the error."""
        try:
            return self.client("sagemaker").describe_endpoint(EndpointName=name)  # type: ignore[no-any-return]
        except ClientError as exc:
            if "Could not find endpoint" in str(exc):
                return None
            raise DeployError(f"cannot describe endpoint {name}: {aws_error(exc)}") from None
        except BotoCoreError as exc:
            raise DeployError(f"cannot describe endpoint {name}: {aws_error(exc)}") from None


def dry_run_line(line: str) -> None:
    print(f"DRY-RUN: {line}", flush=True)
