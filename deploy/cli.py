"""Deploy the SAM hold-extraction endpoint to SageMaker (boto3).

  ./deploy_to_sagemaker.sh [--dry-run] [--env-file FILE] [--mode realtime|async] [VAR=value ...] COMMAND...

Commands (run in the order given; `all` = check package image model config endpoint autoscale test):
  check      credentials, bucket, role, GPU driver vs the image's CUDA (and docker, if the image is built here)
  package    model.tar.gz from MODEL_DIR, uploaded to s3://S3_BUCKET/S3_KEY (skipped if unchanged)
  image      build Dockerfile.sagemaker and push it to ECR (creates the repository); skipped if IMAGE_URI is set
  model      a new, uniquely named SageMaker model
  config     a new endpoint config (real-time, or asynchronous with S3 output) for that model
  endpoint   create the endpoint, or update it in place (blue/green: autoscaling deregistered, instance
             count kept, autoscaling registered again, also when the update fails), and wait
  autoscale  target tracking (realtime: invocations per instance; async: backlog, down to zero)
  test       invoke the endpoint through sagemaker_client.py with a 12 MP sample wall photo; fail on a wrong answer
  status     endpoint, variants and their traffic weights, scaling, and where its logs and metrics are
  delete     scaling policies, endpoint, and every endpoint config and model this tool made for it

A/B tests (two production variants on one endpoint; set any VARIANT_B_* setting, see README_SAGEMAKER.md):
  shift VARIANT:WEIGHT...   set traffic weights (UpdateEndpointWeightsAndCapacities) and wait
  promote VARIANT           end the test: VARIANT takes all traffic, the other variant is removed

Batch transform (one request file per photo: .zip as the asynchronous endpoint takes, or .json):
  batch INPUT_S3_PREFIX OUTPUT_S3_PREFIX   run a transform job over every file under the input
             prefix, wait, and report; each answer lands at OUTPUT_S3_PREFIX<file>.out
  batch --warm PHOTOS_S3_PREFIX OUTPUT_S3_PREFIX   pre-warm the shared embedding tier (SHARED_CACHE_URL):
             every photo under the prefix is encoded and stored, nothing decoded; prints the report
             (per photo: stored, already_present or refused with the reason; totals) read from the .out files

Settings come from the environment, then --env-file (default .env, if present), then VAR=value
arguments; nothing needs editing here. All of them are checked before any AWS call. --dry-run
prints the AWS calls that would change something (read-only calls still run, so it needs credentials).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from deploy.aws import NO_CREDENTIALS, Aws, DeployError, aws_error, error_line
from deploy.envfile import read_env_file
from deploy.run import Run
from deploy.settings import settings_from_env
from deploy.values import SettingsError

SIMPLE_COMMANDS = ("check", "package", "image", "model", "config", "endpoint", "autoscale", "test", "status", "delete",
                   "all")
AWS_CHAIN_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")
ALL = ("check", "package", "image", "model", "config", "endpoint", "autoscale", "test")


class UsageError(ValueError):
    """A command line the tool cannot read (the usage is printed with it)."""


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Invocation:
    dry_run: bool = False
    env_file: str = ".env"
    overrides: tuple[tuple[str, str], ...] = ()
    commands: tuple[Command, ...] = field(default_factory=tuple)


def parse_args(argv: Sequence[str]) -> Invocation | None:
    """The command line; None for --help."""
    dry_run, env_file, overrides, commands = False, ".env", [], []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--dry-run":
            dry_run = True
        elif arg in ("--env-file", "--mode"):
            if not args:
                raise UsageError("--env-file needs a file" if arg == "--env-file" else "--mode needs realtime or async")
            value = args.pop(0)
            if arg == "--env-file":
                env_file = value
            else:
                overrides.append(("DEPLOY_MODE", value))
        elif arg in ("-h", "--help"):
            return None
        elif "=" in arg and not arg.startswith("-"):
            name, _, value = arg.partition("=")
            overrides.append((name, value))
        elif arg in SIMPLE_COMMANDS:
            commands.append(Command(arg))
        elif arg == "shift":
            pairs = []
            while args and ":" in args[0] and "=" not in args[0]:
                pairs.append(args.pop(0))
            if not pairs:
                raise UsageError("shift needs VARIANT:WEIGHT pairs, e.g. shift Primary:50 Challenger:50")
            commands.append(Command("shift", tuple(pairs)))
        elif arg == "promote":
            if not args or "=" in args[0]:
                raise UsageError("promote needs the name of the variant that wins, e.g. promote Challenger")
            commands.append(Command("promote", (args.pop(0),)))
        elif arg == "batch":
            warm = bool(args) and args[0] == "--warm"
            if warm:
                args.pop(0)
            if len(args) < 2 or not all(a.startswith("s3://") for a in args[:2]):
                raise UsageError("batch needs INPUT_S3_PREFIX OUTPUT_S3_PREFIX (with --warm before them: a prefix of "
                                 "photos), e.g. batch s3://my-bucket/batch/input/ s3://my-bucket/batch/output/")
            commands.append(Command("batch-warm" if warm else "batch", (args.pop(0), args.pop(0))))
        else:
            raise UsageError(f"unknown argument: {arg}")
    if not commands:
        raise UsageError("no command given")
    return Invocation(dry_run, env_file, tuple(overrides), tuple(commands))


def environment(invocation: Invocation, base: Mapping[str, str]) -> dict[str, str]:
    """The environment, then the env file (when present), then the VAR=value arguments."""
    merged = dict(base)
    if os.path.isfile(invocation.env_file):
        merged.update(read_env_file(invocation.env_file))
    merged.update(invocation.overrides)
    return merged


def aws_region(environ: Mapping[str, str]) -> str:
    """AWS_REGION, else the AWS chain's (AWS_DEFAULT_REGION, the profile's), else us-east-1."""
    if environ.get("AWS_REGION"):
        return environ["AWS_REGION"]
    try:
        return boto3.session.Session().region_name or "us-east-1"
    except BotoCoreError as exc:  # a broken profile
        raise SettingsError(f"cannot read the AWS region from the profile: {aws_error(exc)}") from None


def run_commands(run: Run, commands: Sequence[Command]) -> None:
    from deploy.registry import COMMANDS
    for command in commands:
        for name in ALL if command.name == "all" else (command.name,):
            handler: Callable[..., None] = COMMANDS[name]
            handler(run, *command.args)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        invocation = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(__doc__, file=sys.stderr)
        error_line(str(exc))
        return 1
    if invocation is None:
        print(__doc__.strip())
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # a stopped run still puts autoscaling back
    try:
        environ = environment(invocation, os.environ)
        os.environ.update(environ)  # boto3 and the tools this runs see the same settings
        for name in AWS_CHAIN_VARIABLES:  # empty is unset (as in bash): the profile's values apply
            if not os.environ.get(name, "x"):
                del os.environ[name]
        settings = settings_from_env(environ, aws_region(os.environ))
        os.environ["AWS_DEFAULT_REGION"] = settings.region
        run = Run.create(settings, Aws.from_environment(settings.region, invocation.dry_run))
        if invocation.dry_run:
            try:
                run.aws.account_id()
            except DeployError:
                raise DeployError(f"--dry-run reads the current state from AWS and needs credentials: {NO_CREDENTIALS}") \
                    from None
        run_commands(run, invocation.commands)
    except (SettingsError, DeployError) as exc:
        error_line(str(exc))
        return 1
    except (BotoCoreError, ClientError) as exc:
        error_line(aws_error(exc))
        return 1
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
    return 0
