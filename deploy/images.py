"""The container image of a variant: IMAGE_URI, the one `image` pushed, or a build and push to ECR."""

from __future__ import annotations

import base64
import subprocess
import time

from botocore.exceptions import ClientError

from deploy.aws import DeployError, dry_run_line, info
from deploy.run import REPO, Run
from deploy.variants import Variant


def image_key(run: Run, variant: Variant) -> str:
    return f"IMAGE_URI_{variant.flavour}" if run.settings.ab_test else "IMAGE_URI"


def ecr_registry(run: Run) -> str:
    return f"{run.aws.account_id()}.dkr.ecr.{run.settings.region}.amazonaws.com"


def image_tag(variant: Variant) -> str:
    """gpu-cu12-<commit>, gpu-cu13-<commit> or cpu-<commit>."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False)
    return f"{variant.flavour}-{commit.stdout.strip() if commit.returncode == 0 else int(time.time())}"


def resolve_image(run: Run, variant: Variant) -> str:
    """The variant's image: IMAGE_URI, the one `image` pushed, or (dry run) the one it would push."""
    image = variant.image_uri or run.state.get(image_key(run, variant))
    if not image and run.dry_run:
        image = f"{ecr_registry(run)}/{run.settings.ecr_repository}:{image_tag(variant)}"
        info(f"no IMAGE_URI and no 'image' step in this run: showing the image 'image' would build and push: {image}")
    if not image:
        raise DeployError("no image: run 'image' first or set IMAGE_URI")
    return image


def cmd_image(run: Run) -> None:
    for variant in run.settings.variants:
        suffix = f" for variant {variant.name}" if variant.key else ""
        if variant.image_uri:
            info(f"IMAGE_URI={variant.image_uri} given{suffix}: not building an image")
        elif variant.flavour in run.built_images:
            info(f"image {run.built_images[variant.flavour]} (built for the other variant) for variant {variant.name}")
        else:
            build_image(run, variant)


def build_image(run: Run, variant: Variant) -> None:
    registry = ecr_registry(run)
    build_args = ["--build-arg", f"VARIANT={variant.image_variant}"]
    if variant.image_variant == "gpu":
        build_args += ["--build-arg", f"CUDA_MAJOR={variant.cuda_major}"]
    uri = f"{registry}/{run.settings.ecr_repository}:{image_tag(variant)}"
    ecr = run.aws.client("ecr")
    try:
        ecr.describe_repositories(repositoryNames=[run.settings.ecr_repository])
    except ClientError:
        run.aws.change("ecr", "CreateRepository", repositoryName=run.settings.ecr_repository,
                       imageScanningConfiguration={"scanOnPush": True})
    if run.dry_run:
        dry_run_line(f"docker build -f Dockerfile.sagemaker {' '.join(build_args)} -t {uri} . && docker push {uri}")
    else:
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        password = base64.b64decode(token).decode().split(":", 1)[1]
        _docker(["login", "--username", "AWS", "--password-stdin", registry], password)
        _docker(["build", "-f", str(REPO / "Dockerfile.sagemaker"), *build_args, "-t", uri, str(REPO)])
        _docker(["push", uri])
    run.built_images[variant.flavour] = uri
    run.state.set(image_key(run, variant), uri)
    info(f"image {uri}")


def _docker(args: list[str], stdin: str | None = None) -> None:
    try:
        done = subprocess.run(["docker", *args], input=stdin, text=True, check=False)
    except FileNotFoundError:
        raise DeployError("docker is needed to build the image (or set IMAGE_URI to an existing image)") from None
    if done.returncode != 0:
        raise DeployError(f"docker {args[0]} failed (exit {done.returncode})")
