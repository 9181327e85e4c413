"""How long SageMaker waits for a new container's first ``/ping`` 200: the production variant's
``ContainerStartupHealthCheckTimeoutInSeconds``.

A GPU variant's image runs TensorRT (``SAM_PROVIDERS=auto`` picks it whenever ``libnvinfer``
loads, and the deploy builds the GPU image with TensorRT). TensorRT builds its engines on the
first start of an instance (minutes for vit_h) unless the model directory ships them in
``trt-cache/`` (``runtime/trt_cache.py``), so such a variant gets a window for that build; with
shipped engines, and on CPU, the default stays. ``STARTUP_HEALTH_TIMEOUT_S`` overrides both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.variants import Variant
from runtime.trt_cache import SHIPPED_ENGINES_DIR, shipped_engines

#: botocore's ``ProductionVariantContainerStartupHealthCheckTimeoutInSeconds``: 60 to 3600 s.
STARTUP_HEALTH_TIMEOUT_RANGE_S = (60, 3600)
#: The window when nothing needs more (SageMaker's own default is 4 minutes).
DEFAULT_STARTUP_HEALTH_TIMEOUT_S = 600
#: The window of a first TensorRT engine build on a new instance (minutes for vit_h, README_SAGEMAKER.md).
FIRST_ENGINE_BUILD_TIMEOUT_S = 1800


@dataclass(frozen=True)
class StartupWindow:
    """The start-up health-check timeout of one variant and why it is that."""

    timeout_s: int
    reason: str


def startup_window(configured_s: int | None, runs_tensorrt: bool, engines_shipped: bool) -> StartupWindow:
    """``STARTUP_HEALTH_TIMEOUT_S`` when set; else a first engine build's window for a TensorRT
    variant whose model ships no engines; else the default."""
    if configured_s is not None:
        return StartupWindow(configured_s, "STARTUP_HEALTH_TIMEOUT_S")
    if runs_tensorrt and not engines_shipped:
        return StartupWindow(FIRST_ENGINE_BUILD_TIMEOUT_S, f"TensorRT builds its engines on a first start: the model "
                                                           f"ships none in {SHIPPED_ENGINES_DIR}/")
    if runs_tensorrt:
        return StartupWindow(DEFAULT_STARTUP_HEALTH_TIMEOUT_S, f"the default: TensorRT engines are shipped in "
                                                               f"{SHIPPED_ENGINES_DIR}/")
    return StartupWindow(DEFAULT_STARTUP_HEALTH_TIMEOUT_S, "the default")


def variant_startup_window(configured_s: int | None, variant: Variant) -> StartupWindow:
    """``startup_window`` of ``variant``: TensorRT on a GPU image, engines looked up in its MODEL_DIR."""
    return startup_window(configured_s, variant.image_variant == "gpu",
                          bool(shipped_engines(Path(variant.model_dir))))
