"""The deploy tool's settings: one frozen snapshot of the environment (after --env-file and
VAR=value arguments), validated before any AWS call; each error names the variable.

The variable names and defaults are the ones README_SAGEMAKER.md's settings table lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from deploy import hosts
from deploy.startup import STARTUP_HEALTH_TIMEOUT_RANGE_S
from deploy.values import SettingsError, choice, id_list, integer, number, text
from deploy.variants import PER_VARIANT_DEFAULTS, Variant, variant_from_env, variants_from_env

DEPLOY_MODES = ("realtime", "async")
TAG_KEY = "sam-holds:endpoint"
SECRET_ID_PATTERN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+"
                               r"|[A-Za-z0-9/_+=.@-]{1,512}")
SNS_TOPIC_PATTERN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}")


@dataclass(frozen=True)
class Network:
    """The container's VPC (CreateModel's VpcConfig) and the shared embedding cache inside it."""

    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    shared_cache_url: str = ""  # redis:// or rediss://, never with a password
    shared_cache_secret_id: str = ""  # Secrets Manager secret holding the cache's AUTH token

    def vpc_config(self) -> dict[str, list[str]] | None:
        if not self.subnet_ids:
            return None
        return {"Subnets": list(self.subnet_ids), "SecurityGroupIds": list(self.security_group_ids)}


@dataclass(frozen=True)
class Batch:
    """Batch transform settings (section 11 of README_SAGEMAKER.md)."""

    max_payload_mb: int
    max_concurrent: int
    instance_type: str  # BATCH_INSTANCE_TYPE, else INSTANCE_TYPE
    image_variant: str  # IMAGE_VARIANT, else by the batch instance type
    instance_count: int
    invocation_timeout_s: int
    max_retries: int
    content_type: str
    accept: str


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, checked."""

    region: str
    endpoint_name: str
    model_name: str
    deploy_mode: str
    variants: tuple[Variant, ...]
    base: Variant  # the plain (unprefixed) settings, which batch and `delete` use
    s3_bucket: str
    role_arn: str
    ecr_repository: str
    artifacts_dir: str
    state_dir: str
    python: str
    async_max_concurrent: int
    async_min_instances: int
    async_target_backlog_per_instance: float
    async_output_prefix: str
    sns_success_topic: str
    sns_error_topic: str
    startup_health_timeout_s: int | None  # None: by variant (deploy/startup.py)
    wait_timeout_s: float
    poll_s: float
    sam_max_body_bytes: str
    runtime_endpoint_url: str  # AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, for `test`
    network: Network
    batch: Batch

    @property
    def ab_test(self) -> bool:
        return len(self.variants) > 1

    def require_bucket(self) -> str:
        if not self.s3_bucket:
            raise SettingsError("S3_BUCKET is not set (environment, .env or S3_BUCKET=... argument)")
        return self.s3_bucket


def network_from_env(environ: Mapping[str, str]) -> Network:
    """VPC_SUBNET_IDS + VPC_SECURITY_GROUP_IDS (both or neither); SHARED_CACHE_URL needs them."""
    subnets_raw, groups_raw = text(environ, "VPC_SUBNET_IDS"), text(environ, "VPC_SECURITY_GROUP_IDS")
    if bool(subnets_raw) != bool(groups_raw):
        missing = "VPC_SECURITY_GROUP_IDS" if subnets_raw else "VPC_SUBNET_IDS"
        raise SettingsError(f"VPC_SUBNET_IDS and VPC_SECURITY_GROUP_IDS go together: {missing} is not set")
    subnets = id_list("VPC_SUBNET_IDS", subnets_raw, "subnet-") if subnets_raw else ()
    groups = id_list("VPC_SECURITY_GROUP_IDS", groups_raw, "sg-") if groups_raw else ()
    url, secret = text(environ, "SHARED_CACHE_URL"), text(environ, "SHARED_CACHE_SECRET_ID")
    if url:
        check_cache_url(url)
        if not subnets:
            raise SettingsError("SHARED_CACHE_URL needs VPC_SUBNET_IDS and VPC_SECURITY_GROUP_IDS: the cache "
                                "(ElastiCache) lives in a VPC, and the container must join it")
    if secret:
        if not url:
            raise SettingsError("SHARED_CACHE_SECRET_ID is the password of SHARED_CACHE_URL's cache: set SHARED_CACHE_URL")
        if not SECRET_ID_PATTERN.fullmatch(secret):
            raise SettingsError(f"SHARED_CACHE_SECRET_ID must be a Secrets Manager secret name or ARN, not '{secret}'")
    return Network(subnets, groups, url, secret)


def check_cache_url(url: str) -> None:
    """A redis:// or rediss:// URL with a host and no password (that goes in SHARED_CACHE_SECRET_ID)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        raise SettingsError(f"SHARED_CACHE_URL is not a valid URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise SettingsError("SHARED_CACHE_URL must be redis://HOST[:PORT][/DB] or rediss://..., not "
                            f"'{parts.scheme}://{parts.hostname or ''}...'")
    if parts.password is not None:
        raise SettingsError("SHARED_CACHE_URL must not carry a password (it would be visible in the model's "
                            "environment): put it in a Secrets Manager secret and name it in SHARED_CACHE_SECRET_ID")


def batch_from_env(environ: Mapping[str, str]) -> Batch:
    payload = integer("BATCH_MAX_PAYLOAD_MB", text(environ, "BATCH_MAX_PAYLOAD_MB", "25"), 1, 100)
    concurrent = integer("BATCH_MAX_CONCURRENT", text(environ, "BATCH_MAX_CONCURRENT", "4"), 1, 100)
    if payload * concurrent > 100:
        raise SettingsError(f"BATCH_MAX_CONCURRENT x BATCH_MAX_PAYLOAD_MB is {payload * concurrent} MB; SageMaker "
                            "allows 100 (MaxConcurrentTransforms x MaxPayloadInMB): lower one of them")
    instance_type = text(environ, "BATCH_INSTANCE_TYPE") or text(environ, "INSTANCE_TYPE",
                                                                    PER_VARIANT_DEFAULTS["INSTANCE_TYPE"])
    image_variant = text(environ, "IMAGE_VARIANT") or hosts.default_image_variant(instance_type)
    return Batch(payload, concurrent, instance_type, image_variant,
                 integer("BATCH_INSTANCE_COUNT", text(environ, "BATCH_INSTANCE_COUNT", "1"), 1, 100),
                 integer("BATCH_INVOCATION_TIMEOUT_S", text(environ, "BATCH_INVOCATION_TIMEOUT_S", "300"), 1, 3600),
                 integer("BATCH_MAX_RETRIES", text(environ, "BATCH_MAX_RETRIES", "1"), 0, 3),
                 text(environ, "BATCH_CONTENT_TYPE"), text(environ, "BATCH_ACCEPT"))


def _topic(environ: Mapping[str, str], name: str) -> str:
    topic = text(environ, name)
    if topic and not SNS_TOPIC_PATTERN.fullmatch(topic):
        raise SettingsError(f"{name} must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME), not '{topic}'")
    return topic


def _startup_health_timeout(environ: Mapping[str, str]) -> int | None:
    """STARTUP_HEALTH_TIMEOUT_S, within SageMaker's range; None when not set (chosen per variant)."""
    raw = text(environ, "STARTUP_HEALTH_TIMEOUT_S")
    return integer("STARTUP_HEALTH_TIMEOUT_S", raw, *STARTUP_HEALTH_TIMEOUT_RANGE_S) if raw else None


def settings_from_env(environ: Mapping[str, str], region: str) -> Settings:
    """The run's settings; ``region`` is the AWS chain's (AWS_REGION, AWS_DEFAULT_REGION, profile)."""
    mode = choice("DEPLOY_MODE", text(environ, "DEPLOY_MODE", "realtime"), DEPLOY_MODES)
    variants = variants_from_env(environ, mode)
    return Settings(
        region=region,
        endpoint_name=text(environ, "ENDPOINT_NAME", "sam-climbing-endpoint"),
        model_name=text(environ, "MODEL_NAME", "sam-climbing-model"),
        deploy_mode=mode, variants=variants,
        base=variants[0] if len(variants) == 1 else variant_from_env(environ, "", mode),
        s3_bucket=text(environ, "S3_BUCKET"), role_arn=text(environ, "ROLE_ARN"),
        ecr_repository=text(environ, "ECR_REPOSITORY", "sam-climbing"),
        artifacts_dir=text(environ, "ARTIFACTS_DIR", "model_artifacts"),
        state_dir=text(environ, "STATE_DIR", ".deploy"), python=text(environ, "PYTHON", "python3"),
        async_max_concurrent=integer("ASYNC_MAX_CONCURRENT", text(environ, "ASYNC_MAX_CONCURRENT", "2"), 1, 1000),
        async_min_instances=integer("ASYNC_MIN_INSTANCES", text(environ, "ASYNC_MIN_INSTANCES", "0"), 0, 1000),
        async_target_backlog_per_instance=number("ASYNC_TARGET_BACKLOG_PER_INSTANCE",
                                                 text(environ, "ASYNC_TARGET_BACKLOG_PER_INSTANCE", "5"), 0, low_open=True),
        async_output_prefix=text(environ, "ASYNC_OUTPUT_PREFIX", "sam-climbing/async").strip("/"),
        sns_success_topic=_topic(environ, "SNS_SUCCESS_TOPIC"), sns_error_topic=_topic(environ, "SNS_ERROR_TOPIC"),
        startup_health_timeout_s=_startup_health_timeout(environ),
        wait_timeout_s=number("WAIT_TIMEOUT_S", text(environ, "WAIT_TIMEOUT_S", "1800"), 0, low_open=True),
        poll_s=number("POLL_S", text(environ, "POLL_S", "15"), 0, 600, low_open=True),
        sam_max_body_bytes=text(environ, "SAM_MAX_BODY_BYTES"),
        runtime_endpoint_url=text(environ, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"),
        network=network_from_env(environ), batch=batch_from_env(environ))
