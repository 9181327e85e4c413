"""`check`, `package`, `test`, `status` and `delete`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy.aws import DeployError, aws_error, dry_run_line, info
from deploy.realtime import role_arn
from deploy.run import REPO, Run
from deploy.scaling import read_scaling, remove_scaling
from deploy.settings import TAG_KEY
from deploy.waits import logs_of


def cmd_check(run: Run) -> None:
    """Settings (already checked), model directories, credentials, bucket, role, docker where an image is built."""
    s = run.settings
    for variant in s.variants:
        if not Path(variant.model_dir).is_dir():
            raise DeployError(f"MODEL_DIR {variant.model_dir} does not exist (export it with export/export_sam.py)")
    account = run.aws.account_id()
    bucket = s.require_bucket()
    try:
        run.aws.client("s3").head_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError):
        raise DeployError(f"bucket s3://{bucket} is missing or not accessible") from None
    role = role_arn(run)
    try:
        run.aws.client("iam").get_role(RoleName=role.rsplit("/", 1)[-1])
    except (BotoCoreError, ClientError):
        raise DeployError(f"IAM role {role} does not exist (set ROLE_ARN)") from None
    if any(not v.image_uri for v in s.variants):
        if shutil.which("docker") is None:
            raise DeployError("docker is needed to build the image (or set IMAGE_URI to an existing image)")
        if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
            raise DeployError("no Docker engine is running (or set IMAGE_URI to an existing image)")
    if s.ab_test:
        summary = "; ".join(f"{v.name} on {v.instance_type}: {v.host_summary()}" for v in s.variants)
    else:
        summary = f"{s.base.instance_type}: {s.base.host_summary()}"
    info(f"check passed: account {account}, region {s.region}, bucket {bucket}, role {role}; {summary}")


def _python(run: Run, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run one of the project's Python tools (PYTHON, with the checkout on PYTHONPATH)."""
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep + path if path else ''}"}
    return subprocess.run([run.settings.python, *args], env=env, text=True, check=False, **kwargs)


def cmd_package(run: Run) -> None:
    bucket = run.settings.require_bucket()
    for variant in run.settings.variants:
        args = ["--model-dir", variant.model_dir, "--output-dir", run.settings.artifacts_dir, "--s3-bucket", bucket,
                "--s3-key", variant.s3_key]
        if run.dry_run:
            dry_run_line(f"{run.settings.python} package_model.py {' '.join(args)}")
            continue
        done = _python(run, [str(REPO / "package_model.py"), *args, "--region", run.settings.region])
        if done.returncode != 0:
            raise DeployError(f"package_model.py failed (exit {done.returncode}) for {variant.model_dir}")


def _test_photo(run: Run, state_dir: Path) -> tuple[Path, str]:
    """A 12 MP phone photo (3024x4032 upright, EXIF-rotated), as the app sends, and its clicks "x,y;x,y"."""
    image = state_dir.resolve() / "test-wall.jpg"
    done = _python(run, ["-m", "synthetic.wall_photo", "--out", str(image), "--clicks", "3"], capture_output=True)
    if done.returncode != 0:
        raise DeployError(f"cannot make the test photo: {done.stderr.strip()}")
    clicks = json.loads(done.stdout)["clicks"]
    return image, ";".join(f"{x},{y}" for x, y in clicks)


def cmd_test(run: Run) -> None:
    s = run.settings
    state_dir = Path(s.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    image, points = _test_photo(run, state_dir)
    args = ["--endpoint-name", s.endpoint_name, "--region", s.region, "--test-image", str(image), "--points", points,
            "--verify"]
    if s.runtime_endpoint_url:
        args += ["--endpoint-url", s.runtime_endpoint_url]
    if s.deploy_mode == "async":
        args += ["--async", "--bucket", s.require_bucket()]
    client = str(REPO / "sagemaker_client.py")
    if not s.ab_test:
        args += ["--out-dir", str(state_dir / "test-output")]
        if run.dry_run:
            dry_run_line(f"{s.python} sagemaker_client.py {' '.join(args)}")
            return
        if _python(run, [client, *args]).returncode != 0:
            raise DeployError(f"the test of {s.endpoint_name} failed (see above)")
        info("test passed: the endpoint answered with a consistent cut-out and mask")
        return
    for variant in s.variants:  # each variant on its own (TargetVariant); the answer must say it gave it
        pinned = [*args, "--target-variant", variant.name, "--out-dir", str(state_dir / "test-output" / variant.name)]
        if run.dry_run:
            dry_run_line(f"{s.python} sagemaker_client.py {' '.join(pinned)}")
            continue
        done = _python(run, [client, *pinned], stdout=subprocess.PIPE)
        print(done.stdout, end="", flush=True)
        if done.returncode != 0:
            raise DeployError(f"the test of variant {variant.name} failed (see above)")
        if json.loads(done.stdout).get("variant") != variant.name:
            raise DeployError(f"the request pinned to variant {variant.name} was not answered by it "
                              "(InvokedProductionVariant)")
        info(f"test passed for variant {variant.name}: it answered with a consistent cut-out and mask")


def cmd_status(run: Run) -> None:
    described = run.aws.describe_endpoint(run.endpoint)
    if described is None:
        print(f"endpoint {run.endpoint} does not exist")
        return
    summary = {"Status": described["EndpointStatus"], "Config": described.get("EndpointConfigName"),
               "Variants": [{"Name": v["VariantName"], "Instances": v.get("CurrentInstanceCount"),
                             "Weight": v.get("CurrentWeight")} for v in described.get("ProductionVariants", [])],
               "FailureReason": described.get("FailureReason")}
    print(json.dumps(summary, indent=4))
    scaling = read_scaling(run)
    print(json.dumps([{"Variant": p.resource_id, "Policy": p.name, "Type": p.policy_type} for p in scaling.policies],
                     indent=4))
    print(f"logs:    {logs_of(run.endpoint)}")
    print("metrics: AWS/SageMaker Invocations, ModelLatency, OverheadLatency, Invocation4XXErrors, Invocation5XXErrors "
          f"(EndpointName={run.endpoint}, per VariantName too)")
    print("         SamHolds TotalLatency, EncoderLatency, ClientErrors, ServerErrors, ... (EndpointName; EndpointName, "
          "VariantName)", flush=True)


def _tagged_names(run: Run, kind: str) -> list[str]:
    """Names of the endpoint configs or models (``kind``) this tool tagged for the endpoint; a failed
    listing stops the run (it must not look like "none")."""
    sagemaker = run.aws.client("sagemaker")
    operation, key, arn_key, prefix = {
        "config": ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigArn", f"{run.settings.model_name}-config"),
        "model": ("list_models", "Models", "ModelArn", run.settings.model_name)}[kind]
    try:
        arns = [item[arn_key] for page in sagemaker.get_paginator(operation).paginate(NameContains=prefix)
                for item in page[key]]
        return [arn.rsplit("/", 1)[-1] for arn in arns if any(
            tag["Key"] == TAG_KEY and tag["Value"] == run.endpoint
            for tag in sagemaker.list_tags(ResourceArn=arn).get("Tags", []))]
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"cannot list the {kind}s of {run.endpoint}: {aws_error(exc)}; nothing was deleted") \
            from None


def cmd_delete(run: Run) -> None:
    """Scaling, the endpoint, then every endpoint config and model this tool tagged for it; all
    looked up first, so a failed lookup deletes nothing."""
    scaling, described = read_scaling(run), run.aws.describe_endpoint(run.endpoint)
    configs, models = _tagged_names(run, "config"), _tagged_names(run, "model")
    remove_scaling(run, scaling)
    if described is not None:
        run.aws.change("sagemaker", "DeleteEndpoint", EndpointName=run.endpoint)
    for name in configs:
        run.aws.change("sagemaker", "DeleteEndpointConfig", EndpointConfigName=name)
    for name in models:
        run.aws.change("sagemaker", "DeleteModel", ModelName=name)
    run.state.forget()
    info(f"deleted {run.endpoint} and what this tool created for it: {len(configs)} endpoint configs, {len(models)} "
         f"models (model.tar.gz stays in s3://{run.settings.s3_bucket or '?'}/{run.settings.base.s3_key})")

