"""TensorRT engines that survive a new instance: shipped in the model directory, copied at start-up.

TensorRT builds an engine per graph, GPU model, TensorRT version, precision and profile: minutes
for vit_h, inside SageMaker's start-up health-check window. ONNX Runtime keeps the engines (and
the timing cache) in ``SAM_TRT_CACHE_DIR``, which on SageMaker is local to the instance and lost
with it. So a model directory may carry them in ``trt-cache/`` (copied from ``SAM_TRT_CACHE_DIR``
after a first start on the same instance type and image): at start-up they are copied into
``SAM_TRT_CACHE_DIR`` (existing files are kept) and ONNX Runtime loads them instead of building.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

#: The model directory's folder of prebuilt TensorRT engines and timing caches.
SHIPPED_ENGINES_DIR = "trt-cache"


def seed_engine_cache(model_dir: Path, cache_dir: Path) -> int:
    """Copy the engines shipped in ``model_dir/trt-cache`` into ``cache_dir``; how many were copied.

    Logs where the cache is and whether TensorRT will build (a first start takes minutes).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    shipped = Path(model_dir) / SHIPPED_ENGINES_DIR
    copied = 0
    for source in sorted(shipped.iterdir()) if shipped.is_dir() else []:
        target = cache_dir / source.name
        if source.is_file() and not target.exists():
            partial = target.with_name(target.name + ".part")
            shutil.copyfile(source, partial)
            partial.replace(target)
            copied += 1
    if any(path.suffix == ".engine" for path in cache_dir.iterdir()):
        log.info("TensorRT engine cache %s: %d files copied from %s", cache_dir, copied, shipped)
    else:
        log.warning("TensorRT engine cache %s holds no engines: TensorRT builds them now (minutes for vit_h; "
                    "the deployment's start-up health-check timeout must allow it). Ship them in %s/ to skip this",
                    cache_dir, shipped)
    return copied


def shipped_engines(model_dir: Path) -> list[Path]:
    """The prebuilt TensorRT engines (``*.engine``) a model directory ships in ``trt-cache/``."""
    shipped = Path(model_dir) / SHIPPED_ENGINES_DIR
    return sorted(path for path in shipped.iterdir() if path.is_file() and path.suffix == ".engine") \
        if shipped.is_dir() else []
