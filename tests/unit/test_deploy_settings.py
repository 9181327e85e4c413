"""The deploy tool's settings: checked before any AWS call, each error naming the variable; the
container's environment from its one table; the dry run's lines as the AWS CLI would take them."""

from __future__ import annotations

import json
import shlex

import pytest

from deploy.aws import bash_quote, cli_line
from deploy.cli import UsageError, parse_args
from deploy.container import CONTAINER_ENVIRONMENT, Job, container_environment
from deploy.envfile import parse_env
from deploy.settings import Settings, settings_from_env
from deploy.values import SettingsError

VPC = {"VPC_SUBNET_IDS": "subnet-0123456789abcdef0,subnet-0fedcba9876543210", "VPC_SECURITY_GROUP_IDS": "sg-0a1b2c3d4e5f60718"}


def _settings(**environ: str) -> Settings:
    return settings_from_env(environ, "eu-west-1")


def test_defaults_are_the_documented_ones() -> None:
    s = _settings()
    (variant,) = s.variants
    assert (s.endpoint_name, s.model_name, s.deploy_mode, s.region) == (
        "sam-climbing-endpoint", "sam-climbing-model", "realtime", "eu-west-1")
    assert (variant.name, variant.instance_type, variant.cuda_major, variant.ami_version) == (
        "Primary", "ml.g4dn.xlarge", 12, "al2-ami-sagemaker-inference-gpu-2-1")
    assert (variant.initial_instance_count, variant.min_instances, variant.max_instances) == (1, 1, 2)
    assert s.network.vpc_config() is None


@pytest.mark.parametrize("environ,message", [
    ({"INITIAL_INSTANCE_COUNT": "two"}, "INITIAL_INSTANCE_COUNT must be a whole number, not 'two'"),
    ({"INITIAL_INSTANCE_COUNT": "0"}, "INITIAL_INSTANCE_COUNT must be 1 to 1000, not '0'"),
    ({"MAX_INSTANCES": "1", "MIN_INSTANCES": "3"}, "MAX_INSTANCES (1) is below MIN_INSTANCES (3)"),
    ({"VARIANT_B_MODEL_DIR": "m", "VARIANT_B_MAX_INSTANCES": "x"}, "VARIANT_B_MAX_INSTANCES must be a whole number"),
    ({"TARGET_INVOCATIONS_PER_INSTANCE": "0"}, "TARGET_INVOCATIONS_PER_INSTANCE must be a number above 0"),
    ({"POLL_S": "soon"}, "POLL_S must be a number, not 'soon'"),
    ({"WAIT_TIMEOUT_S": "nan"}, "WAIT_TIMEOUT_S must be a number above 0"),
    ({"STARTUP_HEALTH_TIMEOUT_S": "30"}, "STARTUP_HEALTH_TIMEOUT_S must be 60 to 3600"),
    ({"DEPLOY_MODE": "batch"}, "DEPLOY_MODE must be realtime or async, not 'batch'"),
    ({"SNS_SUCCESS_TOPIC": "done"}, "SNS_SUCCESS_TOPIC must be an SNS topic ARN"),
    ({"BATCH_MAX_PAYLOAD_MB": "101"}, "BATCH_MAX_PAYLOAD_MB must be 1 to 100"),
    ({"BATCH_MAX_PAYLOAD_MB": "30", "BATCH_MAX_CONCURRENT": "4"}, "BATCH_MAX_CONCURRENT x BATCH_MAX_PAYLOAD_MB is 120 MB"),
    ({"CUDA_MAJOR": "13", "INFERENCE_AMI_VERSION": "al2-ami-sagemaker-inference-gpu-3-1"}, "it needs driver 580"),
    ({"VARIANT_B_MODEL_DIR": "m", "VARIANT_B_CUDA_MAJOR": "11"}, "VARIANT_B_CUDA_MAJOR must be 12 or 13, not '11'"),
])
def test_a_bad_setting_is_refused_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _settings(**environ)
    assert message in str(refused.value)


def test_vpc_goes_to_create_model_and_needs_both_lists() -> None:
    network = _settings(**VPC).network
    assert network.vpc_config() == {"Subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
                                    "SecurityGroupIds": ["sg-0a1b2c3d4e5f60718"]}
    for alone, missing in (("VPC_SUBNET_IDS", "VPC_SECURITY_GROUP_IDS"), ("VPC_SECURITY_GROUP_IDS", "VPC_SUBNET_IDS")):
        with pytest.raises(SettingsError, match=f"{missing} is not set"):
            _settings(**{alone: VPC[alone]})
    with pytest.raises(SettingsError, match="VPC_SECURITY_GROUP_IDS must be comma-separated sg-"):
        _settings(**{**VPC, "VPC_SECURITY_GROUP_IDS": "subnet-0123456789abcdef0"})


@pytest.mark.parametrize("environ,message", [
    ({"SHARED_CACHE_URL": "redis://cache.example:6379/0"}, "SHARED_CACHE_URL needs VPC_SUBNET_IDS"),
    ({**VPC, "SHARED_CACHE_URL": "redis://:s3cret@cache.example:6379"}, "must not carry a password"),
    ({**VPC, "SHARED_CACHE_URL": "rediss://default:s3cret@cache.example"}, "must not carry a password"),
    ({**VPC, "SHARED_CACHE_URL": "http://cache.example"}, "SHARED_CACHE_URL must be redis://"),
    ({**VPC, "SHARED_CACHE_URL": "redis://cache.example:99999"}, "SHARED_CACHE_URL is not a valid URL"),
    ({**VPC, "SHARED_CACHE_SECRET_ID": "cache-token"}, "set SHARED_CACHE_URL"),
    ({**VPC, "SHARED_CACHE_URL": "rediss://c.example", "SHARED_CACHE_SECRET_ID": "bad secret"}, "SHARED_CACHE_SECRET_ID must"),
])
def test_shared_cache_settings_are_checked(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _settings(**environ)
    assert message in str(refused.value)
    assert "s3cret" not in str(refused.value)  # a refused password is not printed


def test_container_environment_carries_the_shared_cache() -> None:
    s = _settings(**VPC, SHARED_CACHE_URL="rediss://sam.abc123.cache.amazonaws.com:6379",
                  SHARED_CACHE_SECRET_ID="arn:aws:secretsmanager:eu-west-1:123456789012:secret:sam-cache-AbCdEf")
    variant = s.variants[0]
    environment = container_environment(Job(s, variant, "realtime", variant.instance_type, variant.image_variant))
    assert environment == {
        "SAM_CACHE_BYTES": "4096MiB", "SAM_MAX_BODY_BYTES": "6MiB", "SAM_LOG_FORMAT": "json",
        "SAM_ENDPOINT_NAME": "sam-climbing-endpoint", "SAM_VARIANT_NAME": "Primary",
        "SAM_SHARED_CACHE_URL": "rediss://sam.abc123.cache.amazonaws.com:6379",
        "SAM_SHARED_CACHE_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:sam-cache-AbCdEf"}
    plain = _settings()
    assert "SAM_SHARED_CACHE_URL" not in container_environment(
        Job(plain, plain.variants[0], "realtime", "ml.g4dn.xlarge", "gpu"))
    assert len({name for name, _ in CONTAINER_ENVIRONMENT}) == len(CONTAINER_ENVIRONMENT)  # one rule per variable


def test_batch_environment_and_per_variant_settings() -> None:
    s = _settings(VARIANT_B_MODEL_DIR="models/vit_t", VARIANT_B_INSTANCE_TYPE="ml.m5.large", VARIANT_A_MAX_INSTANCES="4",
                  BATCH_INVOCATION_TIMEOUT_S="60", BATCH_MAX_PAYLOAD_MB="20")
    a, b = s.variants
    assert (a.name, a.max_instances, a.weight, a.s3_key) == ("Primary", 4, 90.0, "sam-climbing/Primary/model.tar.gz")
    assert (b.name, b.max_instances, b.image_variant, b.ami_version) == ("Challenger", 2, "cpu", "none")
    environment = container_environment(Job(s, s.base, "batch", "ml.m5.large", "cpu"))
    assert environment == {"SAM_CACHE_BYTES": "2048MiB", "SAM_MAX_BODY_BYTES": "20MiB", "SAM_MAX_RESPONSE_BYTES": "256MiB",
                           "SAM_REQUEST_TIMEOUT_S": "55", "SAM_LOG_FORMAT": "json", "SAM_METRICS": "false"}
    asynchronous = container_environment(Job(s, a, "async", a.instance_type, a.image_variant))
    assert asynchronous["SAM_MAX_RESPONSE_BYTES"] == "256MiB" and asynchronous["SAM_MAX_BODY_BYTES"] == "256MiB"


def test_dry_run_lines_read_as_the_aws_cli_takes_them() -> None:
    line = cli_line("sagemaker", "UpdateEndpoint", {
        "EndpointName": "ep", "EndpointConfigName": "cfg", "RetainAllVariantProperties": True,
        "ExcludeRetainedVariantProperties": [{"VariantPropertyType": "DesiredWeight"}]})
    assert line == ("aws sagemaker update-endpoint --endpoint-name ep --endpoint-config-name cfg "
                    "--retain-all-variant-properties --exclude-retained-variant-properties VariantPropertyType=DesiredWeight")
    variants = [{"VariantName": "Primary", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large", "X": 1.5}]
    words = shlex.split(cli_line("sagemaker", "CreateEndpointConfig", {"ProductionVariants": variants,
                                                                       "MaxPayloadInMB": 25}))
    assert words[3:] == ["--production-variants", json.dumps(variants, separators=(",", ":")), "--max-payload-in-mb", "25"]
    for word in ("", "a b", '{"k":"v, w"}', "~x", "#y", "it's", "$HOME", "a;b|c&d", "[x]*?"):
        assert shlex.split(f"echo {bash_quote(word)}")[1:] == [word], word
    assert bash_quote('{"a":1}') == '\\{\\"a\\":1\\}'  # as bash's printf %q


def test_command_line() -> None:
    invocation = parse_args(["--dry-run", "A=1", "shift", "Primary:50", "Challenger:50", "B=x=y", "promote", "P",
                             "--mode", "async", "batch", "s3://b/in/", "s3://b/out/", "all"])
    assert invocation is not None and invocation.dry_run
    assert invocation.overrides == (("A", "1"), ("B", "x=y"), ("DEPLOY_MODE", "async"))
    assert [(c.name, c.args) for c in invocation.commands] == [
        ("shift", ("Primary:50", "Challenger:50")), ("promote", ("P",)), ("batch", ("s3://b/in/", "s3://b/out/")),
        ("all", ())]
    assert parse_args(["--help"]) is None
    for argv, message in ((["shift"], "shift needs"), (["promote", "A=b"], "promote needs"),
                          (["batch", "s3://b/in/"], "batch needs"), (["deploy"], "unknown argument: deploy"), ([], "no command")):
        with pytest.raises(UsageError, match=message):
            parse_args(argv)


def test_env_file_takes_shell_quoting_and_runs_nothing() -> None:
    text = "# settings\nexport S3_BUCKET=my-bucket\nMODEL_DIR='models/vit b'\nX=\"a $(rm -rf /) b\"  # note\nEMPTY=\n"
    assert parse_env(text, ".env") == {"S3_BUCKET": "my-bucket", "MODEL_DIR": "models/vit b", "X": "a $(rm -rf /) b",
                                       "EMPTY": ""}
    with pytest.raises(SettingsError, match=".env:1: not a NAME=value line"):
        parse_env("rm -rf /\n", ".env")
