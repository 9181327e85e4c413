"""The production variant's start-up health-check window (``deploy/startup.py``): a first TensorRT
engine build gets one when the model ships no engines; the default stays otherwise."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import botocore
import pytest

from deploy.settings import settings_from_env
from deploy.startup import (
    DEFAULT_STARTUP_HEALTH_TIMEOUT_S,
    FIRST_ENGINE_BUILD_TIMEOUT_S,
    STARTUP_HEALTH_TIMEOUT_RANGE_S,
    startup_window,
    variant_startup_window,
)
from deploy.values import SettingsError


def _botocore_range() -> tuple[int, int]:
    """The range of ProductionVariant.ContainerStartupHealthCheckTimeoutInSeconds in botocore's model."""
    model_dir = Path(botocore.__file__).parent / "data" / "sagemaker"
    path = max(model_dir.glob("*/service-2.json*"))
    model = json.loads(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_text())
    member = model["shapes"]["ProductionVariant"]["members"]["ContainerStartupHealthCheckTimeoutInSeconds"]
    shape = model["shapes"][member["shape"]]
    return int(shape["min"]), int(shape["max"])


def test_the_windows_lie_in_sagemakers_range() -> None:
    low, high = _botocore_range()
    assert STARTUP_HEALTH_TIMEOUT_RANGE_S == (low, high) == (60, 3600)
    assert low <= DEFAULT_STARTUP_HEALTH_TIMEOUT_S < FIRST_ENGINE_BUILD_TIMEOUT_S <= high


@pytest.mark.parametrize(("configured", "tensorrt", "shipped", "timeout_s"), [
    (None, True, False, FIRST_ENGINE_BUILD_TIMEOUT_S), (None, True, True, DEFAULT_STARTUP_HEALTH_TIMEOUT_S),
    (None, False, False, DEFAULT_STARTUP_HEALTH_TIMEOUT_S), (900, True, False, 900), (120, False, True, 120)])
def test_the_window_is_a_first_builds_only_when_tensorrt_must_build(
        configured: int | None, tensorrt: bool, shipped: bool, timeout_s: int) -> None:
    assert startup_window(configured, tensorrt, shipped).timeout_s == timeout_s


def _variant_window(model_dir: Path, **environ: str) -> tuple[int, str]:
    settings = settings_from_env({"MODEL_DIR": str(model_dir), **environ}, "us-east-1")
    window = variant_startup_window(settings.startup_health_timeout_s, settings.base)
    return window.timeout_s, window.reason


def test_a_gpu_variant_looks_for_engines_in_its_model_directory(tmp_path: Path) -> None:
    reason = "TensorRT builds its engines on a first start: the model ships none in trt-cache/"
    assert _variant_window(tmp_path) == (FIRST_ENGINE_BUILD_TIMEOUT_S, reason)
    (tmp_path / "trt-cache").mkdir()
    (tmp_path / "trt-cache" / "timing.cache").write_bytes(b"x")  # a timing cache is not an engine
    assert _variant_window(tmp_path)[0] == FIRST_ENGINE_BUILD_TIMEOUT_S
    (tmp_path / "trt-cache" / "TensorrtExecutionProvider_TRTKernel_encoder_sm75.engine").write_bytes(b"x")
    assert _variant_window(tmp_path)[0] == DEFAULT_STARTUP_HEALTH_TIMEOUT_S
    assert _variant_window(tmp_path / "missing", INSTANCE_TYPE="ml.m5.large")[0] == DEFAULT_STARTUP_HEALTH_TIMEOUT_S
    assert _variant_window(tmp_path / "missing", STARTUP_HEALTH_TIMEOUT_S="3600") == (3600, "STARTUP_HEALTH_TIMEOUT_S")


def test_a_set_timeout_outside_the_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="STARTUP_HEALTH_TIMEOUT_S must be 60 to 3600"):
        _variant_window(tmp_path, STARTUP_HEALTH_TIMEOUT_S="3601")
