"""The start-up health-check window the deploy gives a TensorRT variant (issue 21), through
deploy_to_sagemaker.sh: its dry-run plan, and the endpoint config it creates in the rehearsal (moto)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.startup import DEFAULT_STARTUP_HEALTH_TIMEOUT_S, FIRST_ENGINE_BUILD_TIMEOUT_S
from tests.integration.rehearsal_stack import Rehearsal, rehearsal

FIELD = "ContainerStartupHealthCheckTimeoutInSeconds"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    with rehearsal(tmp_path_factory.mktemp("startup"), "http://127.0.0.1:9") as running:
        yield running


def _model_dir(tmp_path: Path, engines: bool) -> Path:
    model_dir = tmp_path / "model"
    (model_dir / "trt-cache").mkdir(parents=True)
    if engines:
        (model_dir / "trt-cache" / "TensorrtExecutionProvider_TRTKernel_encoder_sm75.engine").write_bytes(b"x")
    return model_dir


def test_the_dry_run_plans_a_first_engine_build_window(stack: Rehearsal, tmp_path: Path) -> None:
    result = stack.deploy(tmp_path, _model_dir(tmp_path, engines=False), "--dry-run", "config")
    assert result.returncode == 0, result.stderr
    config = next(line for line in result.stdout.splitlines() if "create-endpoint-config" in line)
    assert re.search(rf"{FIELD}\W+{FIRST_ENGINE_BUILD_TIMEOUT_S}\b", config), config
    assert (f"start-up health check of variant Primary: {FIRST_ENGINE_BUILD_TIMEOUT_S} s (TensorRT builds its "
            "engines on a first start: the model ships none in trt-cache/)") in result.stderr


@pytest.mark.parametrize(("engines", "settings", "timeout_s"), [
    (False, (), FIRST_ENGINE_BUILD_TIMEOUT_S), (True, (), DEFAULT_STARTUP_HEALTH_TIMEOUT_S),
    (False, ("INSTANCE_TYPE=ml.m5.large",), DEFAULT_STARTUP_HEALTH_TIMEOUT_S),
    (False, ("STARTUP_HEALTH_TIMEOUT_S=900",), 900)])
def test_the_endpoint_config_carries_the_window(stack: Rehearsal, tmp_path: Path, engines: bool,
                                                settings: tuple[str, ...], timeout_s: int) -> None:
    result = stack.deploy(tmp_path, _model_dir(tmp_path, engines), *settings, "model", "config")
    assert result.returncode == 0, result.stderr
    name = re.findall(r"endpoint config (\S+) \(", result.stderr)[-1]
    [variant] = stack.client("sagemaker").describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"]
    assert variant[FIELD] == timeout_s
