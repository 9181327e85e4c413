"""Runtime configuration: a frozen snapshot read once from the environment.

Every variable the runtime reads is named here. A bad value raises ``ValueError`` naming
the variable, so a misconfigured container fails at start-up, not on a request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from runtime.cpu_engines import CpuEngineSetting, OpenVinoOptions, parse_cpu_engine
from runtime.cpu_precision import CpuPrecisionSetting, parse_cpu_precision
from runtime.device_memory import DeviceMemorySettings
from runtime.env_values import (
    choice,
    env_field,
    non_negative_int,
    parse_bool,
    parse_bytes,
    positive,
    read_env,
    read_fields,
)
from runtime.image_io import DEFAULT_MAX_JPEG_SCANS, DEFAULT_MAX_PIXELS
from runtime.prepost import PrePostSetting, parse_prepost
from runtime.providers import AUTO_ORDER, CpuOptions, CudaOptions, ProviderConfig, ProviderName, TensorRTOptions
from runtime.shared_config import SharedCacheConfig, parse_store_url
from runtime.shared_store import SharedStoreSettings

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


_precision: Callable[[str], Precision] = choice(*get_args(Precision))


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
    precision: Precision = env_field("auto", "SAM_PRECISION", _precision)
    cpu_engine: CpuEngineSetting = env_field("auto", "SAM_CPU_ENGINE", parse_cpu_engine)
    cpu_prepost: PrePostSetting = env_field("auto", "SAM_CPU_PREPOST", parse_prepost)
    #: The CPU tier's precision (``runtime.cpu_precision``); SAM_OPENVINO_PRECISION is its old name.
    cpu_precision: CpuPrecisionSetting = "auto"
    openvino: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    cache_bytes: int | None = env_field(None, "SAM_CACHE_BYTES", positive(parse_bytes))
    device_memory: DeviceMemorySettings = field(default_factory=DeviceMemorySettings)
    max_image_pixels: int = env_field(DEFAULT_MAX_PIXELS, "SAM_MAX_IMAGE_PIXELS", positive(int))
    max_jpeg_scans: int = env_field(DEFAULT_MAX_JPEG_SCANS, "SAM_MAX_JPEG_SCANS", positive(int))
    max_clicks: int = env_field(64, "SAM_MAX_CLICKS", positive(int))
    #: Prompts per decoder run on the host (memory grows with a run's prompts; see SamEngine).
    cpu_decoder_prompts_per_run: int = env_field(4, "SAM_CPU_DECODER_PROMPTS_PER_RUN", positive(int))
    #: Bytes of decoded prompts kept per cached image, so resent clicks skip the decoder (0: off).
    prompt_cache_bytes_per_image: int = env_field(32 << 20, "SAM_PROMPT_CACHE_BYTES_PER_IMAGE", parse_bytes)
    verify_model_checksums: bool = env_field(True, "SAM_VERIFY_MODEL_SHA256", parse_bool)
    #: ONNX Runtime's profiler writes each session's node placement and timings here (diagnostics).
    ort_profile_dir: str | None = env_field(None, "SAM_ORT_PROFILE_DIR", str)
    #: The shared embedding tier (Valkey/Redis), or None without SAM_SHARED_CACHE_URL.
    shared_cache: SharedCacheConfig | None = None

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

    @staticmethod
    def _shared_cache(environ: Mapping[str, str]) -> SharedCacheConfig | None:
        """The SAM_SHARED_CACHE_* settings, or None when SAM_SHARED_CACHE_URL is unset."""
        url = read_env(environ, "SAM_SHARED_CACHE_URL", parse_store_url, None)
        secret_id = read_env(environ, "SAM_SHARED_CACHE_SECRET_ID", str.strip, None)
        password_file = read_env(environ, "SAM_SHARED_CACHE_PASSWORD_FILE", Path, None)
        if url is None:
            if secret_id or password_file:
                raise ValueError("SAM_SHARED_CACHE_SECRET_ID / SAM_SHARED_CACHE_PASSWORD_FILE need SAM_SHARED_CACHE_URL")
            return None
        if secret_id and password_file:
            raise ValueError("set SAM_SHARED_CACHE_SECRET_ID or SAM_SHARED_CACHE_PASSWORD_FILE, not both")
        defaults = SharedStoreSettings(url)
        store = SharedStoreSettings(
            url,
            connect_timeout_ms=read_env(environ, "SAM_SHARED_CACHE_CONNECT_TIMEOUT_MS", positive(int),
                                        defaults.connect_timeout_ms),
            command_timeout_ms=read_env(environ, "SAM_SHARED_CACHE_COMMAND_TIMEOUT_MS", positive(int),
                                        defaults.command_timeout_ms),
            ttl_s=read_env(environ, "SAM_SHARED_CACHE_TTL_S", positive(int), defaults.ttl_s),
            lock_ttl_ms=read_env(environ, "SAM_SHARED_CACHE_LOCK_TTL_MS", positive(int), defaults.lock_ttl_ms),
            lock_wait_ms=read_env(environ, "SAM_SHARED_CACHE_LOCK_WAIT_MS", non_negative_int, defaults.lock_wait_ms),
            retry_after_ms=read_env(environ, "SAM_SHARED_CACHE_RETRY_AFTER_MS", non_negative_int,
                                    defaults.retry_after_ms),
        )
        return SharedCacheConfig(store, secret_id, password_file)

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
        cuda_defaults, cpu_defaults, providers_defaults = CudaOptions(), CpuOptions(), ProviderConfig()
        cuda = CudaOptions(
            device_id=read_env(environ, "SAM_CUDA_DEVICE_ID", int, cuda_defaults.device_id),
            gpu_mem_limit_bytes=read_env(environ, "SAM_CUDA_MEM_LIMIT", positive(parse_bytes),
                                         cuda_defaults.gpu_mem_limit_bytes),
        )
        cpu = CpuOptions(
            intra_op_threads=read_env(environ, "SAM_CPU_THREADS", int, cpu_defaults.intra_op_threads),
            memory_arena=read_env(environ, "SAM_CPU_ARENA", parse_bool, cpu_defaults.memory_arena),
            spinning=read_env(environ, "SAM_CPU_SPINNING", parse_bool, cpu_defaults.spinning),
        )
        providers = ProviderConfig(
            requested=read_env(environ, "SAM_PROVIDERS", parse_providers, providers_defaults.requested),
            require_gpu=read_env(environ, "SAM_REQUIRE_GPU", parse_bool, providers_defaults.require_gpu),
            tensorrt=tensorrt, cuda=cuda, cpu=cpu,
        )
        openvino_defaults = OpenVinoOptions()
        openvino = OpenVinoOptions(
            cache_dir=read_env(environ, "SAM_OPENVINO_CACHE_DIR", str, openvino_defaults.cache_dir),
        )
        return cls(providers=providers, openvino=openvino,
                   device_memory=DeviceMemorySettings(**read_fields(DeviceMemorySettings, environ)),
                   shared_cache=cls._shared_cache(environ), cpu_precision=_cpu_precision(environ),
                   **read_fields(cls, environ))
