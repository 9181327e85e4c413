"""Runtime configuration: a frozen snapshot read once from the environment.

Every variable the runtime reads is named here. A bad value raises ``ValueError`` naming
the variable, so a misconfigured container fails at start-up, not on a request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, cast

from runtime.cpu_engines import CpuEngineSetting, OpenVinoOptions, parse_cpu_engine
from runtime.cpu_precision import CpuPrecisionSetting, parse_cpu_precision
from runtime.env_values import choice, parse_bool, parse_bytes, positive, read_env
from runtime.image_io import DEFAULT_MAX_JPEG_SCANS, DEFAULT_MAX_PIXELS
from runtime.prepost import PrePostSetting, parse_prepost
from runtime.providers import AUTO_ORDER, CpuOptions, CudaOptions, ProviderConfig, ProviderName, TensorRTOptions

Precision = Literal["auto", "fp32", "fp16"]

#: Embedding cache budgets when SAM_CACHE_BYTES is unset. An entry is a 4 MiB fp32
#: embedding plus the compressed upload (a few MiB for a phone JPEG).
DEFAULT_CACHE_BYTES_GPU = 2 << 30  # ml.g4dn.xlarge: 16 GiB host RAM, 16 GiB T4
DEFAULT_CACHE_BYTES_CPU = 1 << 30  # ml.m5.large: 8 GiB host RAM

def parse_providers(text: str) -> tuple[ProviderName, ...] | Literal["auto"]:
    """'auto' or a comma-separated order of tensorrt, cuda, cpu."""
    if text.strip().lower() == "auto":
        return "auto"
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in AUTO_ORDER]
    if unknown or not names:
        raise ValueError(f"{text!r}: expected 'auto' or a list of {', '.join(AUTO_ORDER)}")
    return cast(tuple[ProviderName, ...], names)


_precision: Callable[[str], Precision] = choice("auto", "fp32", "fp16")


def _cpu_precision(environ: Mapping[str, str]) -> CpuPrecisionSetting:
    """SAM_CPU_PRECISION, or its old name SAM_OPENVINO_PRECISION; both set must agree."""
    new = read_env(environ, "SAM_CPU_PRECISION", parse_cpu_precision, None)
    old = read_env(environ, "SAM_OPENVINO_PRECISION", parse_cpu_precision, None)
    if new is not None and old is not None and new != old:
        raise ValueError(f"SAM_CPU_PRECISION={new} and its old name SAM_OPENVINO_PRECISION={old} disagree: "
                         "set SAM_CPU_PRECISION only")
    return new or old or "auto"


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything the engine needs besides the model directory."""

    providers: ProviderConfig = field(default_factory=ProviderConfig)
    precision: Precision = "auto"
    cpu_engine: CpuEngineSetting = "auto"
    cpu_prepost: PrePostSetting = "auto"
    #: The CPU tier's precision (``runtime.cpu_precision``); SAM_OPENVINO_PRECISION is its old name.
    cpu_precision: CpuPrecisionSetting = "auto"
    openvino: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    cache_bytes: int | None = None
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS
    max_clicks: int = 64
    #: Prompts per decoder run on the host (memory grows with a run's prompts; see SamEngine).
    cpu_decoder_prompts_per_run: int = 4
    verify_model_checksums: bool = True

    def cache_budget(self, on_gpu: bool) -> int:
        """The embedding cache budget in bytes: configured, or the default for the device."""
        if self.cache_bytes is not None:
            return self.cache_bytes
        return DEFAULT_CACHE_BYTES_GPU if on_gpu else DEFAULT_CACHE_BYTES_CPU

    @staticmethod
    def _tensorrt(environ: Mapping[str, str], trt_defaults: TensorRTOptions) -> TensorRTOptions:
        return TensorRTOptions(
            fp16=read_env(environ, "SAM_TRT_FP16", parse_bool, trt_defaults.fp16),
            engine_cache=read_env(environ, "SAM_TRT_ENGINE_CACHE", parse_bool, trt_defaults.engine_cache),
            cache_dir=read_env(environ, "SAM_TRT_CACHE_DIR", str, trt_defaults.cache_dir),
            timing_cache=read_env(environ, "SAM_TRT_TIMING_CACHE", parse_bool, trt_defaults.timing_cache),
            max_workspace_bytes=read_env(environ, "SAM_TRT_MAX_WORKSPACE", positive(parse_bytes), trt_defaults.max_workspace_bytes),
            builder_optimization_level=read_env(environ, "SAM_TRT_OPT_LEVEL", int, trt_defaults.builder_optimization_level),
            max_prompts=read_env(environ, "SAM_TRT_MAX_PROMPTS", positive(int), trt_defaults.max_prompts),
            opt_prompts=read_env(environ, "SAM_TRT_OPT_PROMPTS", positive(int), trt_defaults.opt_prompts),
            max_points=read_env(environ, "SAM_TRT_MAX_POINTS", positive(int), trt_defaults.max_points),
            cuda_graph=read_env(environ, "SAM_TRT_CUDA_GRAPH", parse_bool, trt_defaults.cuda_graph),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RuntimeSettings:
        """Read the ``SAM_*`` variables (see the README's configuration table)."""
        trt_defaults = TensorRTOptions()
        try:
            tensorrt = cls._tensorrt(environ, trt_defaults)
        except ValueError as exc:
            if "environment variable" in str(exc):
                raise
            raise ValueError(f"TensorRT settings (SAM_TRT_*) are inconsistent: {exc}") from exc
        cuda = CudaOptions(
            device_id=read_env(environ, "SAM_CUDA_DEVICE_ID", int, 0),
            gpu_mem_limit_bytes=read_env(environ, "SAM_CUDA_MEM_LIMIT", positive(parse_bytes), None),
        )
        cpu = CpuOptions(
            intra_op_threads=read_env(environ, "SAM_CPU_THREADS", int, 0),
            memory_arena=read_env(environ, "SAM_CPU_ARENA", parse_bool, True),
            spinning=read_env(environ, "SAM_CPU_SPINNING", parse_bool, True),
        )
        providers = ProviderConfig(
            requested=read_env(environ, "SAM_PROVIDERS", parse_providers, "auto"),
            require_gpu=read_env(environ, "SAM_REQUIRE_GPU", parse_bool, False),
            tensorrt=tensorrt, cuda=cuda, cpu=cpu,
        )
        return cls(
            providers=providers,
            precision=read_env(environ, "SAM_PRECISION", _precision, "auto"),
            cpu_engine=read_env(environ, "SAM_CPU_ENGINE", parse_cpu_engine, "auto"),
            cpu_prepost=read_env(environ, "SAM_CPU_PREPOST", parse_prepost, "auto"),
            cpu_precision=_cpu_precision(environ),
            openvino=OpenVinoOptions(
                cache_dir=read_env(environ, "SAM_OPENVINO_CACHE_DIR", str, None),
            ),
            cache_bytes=read_env(environ, "SAM_CACHE_BYTES", positive(parse_bytes), None),
            max_image_pixels=read_env(environ, "SAM_MAX_IMAGE_PIXELS", positive(int), DEFAULT_MAX_PIXELS),
            max_jpeg_scans=read_env(environ, "SAM_MAX_JPEG_SCANS", positive(int), DEFAULT_MAX_JPEG_SCANS),
            max_clicks=read_env(environ, "SAM_MAX_CLICKS", positive(int), 64),
            cpu_decoder_prompts_per_run=read_env(environ, "SAM_CPU_DECODER_PROMPTS_PER_RUN", positive(int), 4),
            verify_model_checksums=read_env(environ, "SAM_VERIFY_MODEL_SHA256", parse_bool, True),
        )
