"""Runtime configuration: a frozen snapshot read once from the environment.

Every variable the runtime reads is declared once, with ``env_field`` on the dataclass field it
sets (here, and in the option dataclasses of ``runtime.providers``, ``cpu_backends``,
``device_memory``, ``shared_store`` and ``shared_config``), with its default, bound and meaning;
``python -m serving.settings_table`` prints them as the README's table. A bad value raises
``ValueError`` naming the variable, so a misconfigured container fails at start-up, not on a request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from runtime.cpu_backends import CpuBackendSetting, OpenVinoOptions, parse_cpu_backend
from runtime.cpu_precision import CpuPrecisionSetting, parse_cpu_precision
from runtime.device_memory import DeviceMemorySettings
from runtime.env_values import (
    choice,
    env_field,
    env_name,
    format_bytes,
    parse_bool,
    parse_bytes,
    positive,
    read_env,
    read_fields,
)
from runtime.image_files import DEFAULT_MAX_JPEG_SCANS, DEFAULT_MAX_PIXELS
from runtime.prepost_choice import PrePostSetting, parse_prepost
from runtime.providers import CpuOptions, CudaOptions, ProviderConfig, TensorRTOptions
from runtime.shared_config import SharedCacheConfig
from runtime.shared_store import SharedStoreSettings

Precision = Literal["auto", "fp32", "fp16"]

#: Embedding cache budgets when SAM_CACHE_BYTES is unset. An entry is a 4 MiB fp32 embedding
#: plus the upright RGB pixels (36 MB at 12 MP) and decoded prompts (``runtime.cache.entry_bytes_for``).
DEFAULT_CACHE_BYTES_GPU = 2 << 30  # ml.g4dn.xlarge: 16 GiB host RAM, 16 GiB T4
DEFAULT_CACHE_BYTES_CPU = 1 << 30  # ml.m5.large: 8 GiB host RAM
#: SAM_CPU_PRECISION's old name, still read; when both are set they must agree.
OLD_CPU_PRECISION_VAR = "SAM_OPENVINO_PRECISION"

_precision: Callable[[str], Precision] = choice(*get_args(Precision))


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything the engine needs besides the model directory."""

    providers: ProviderConfig = field(default_factory=ProviderConfig)
    precision: Precision = env_field(
        "auto", "SAM_PRECISION", _precision,
        doc="`auto`: the `fp16` graphs on CUDA (a warning when the export has none: export GPU models with "
            "`--fp16`); `fp16`: refuse to start without them; `fp32`; TensorRT builds fp16 itself (`SAM_TRT_FP16`). "
            "The start-up log names each graph's file and precision (`encoder runs encoder_fp16.onnx (fp16) on cuda`)")
    cpu_engine: CpuBackendSetting = env_field(
        "auto", "SAM_CPU_ENGINE", parse_cpu_backend,
        doc="on CPU: `auto` (OpenVINO for the encoder when installed, ONNX Runtime for the decoder: the faster of "
            "each, measured), `onnxruntime` or `openvino` for both graphs; GPU providers always use ONNX Runtime")
    cpu_prepost: PrePostSetting = env_field(
        "auto", "SAM_CPU_PREPOST", parse_prepost,
        doc="on CPU: `auto` (Pillow/numpy pre-processing and mask rendering: faster on CPU, measured), `numpy`, or "
            "`graph` (the exported `preprocess.onnx`/`postprocess.onnx` on the CPU EP, as a GPU runs them); GPU "
            "providers always use the graphs when the export has them")
    cpu_precision: CpuPrecisionSetting = env_field(
        "auto", "SAM_CPU_PRECISION", parse_cpu_precision,
        doc="the CPU tier (`runtime.cpu_precision`): `f32` (parity with PyTorch), `bf16` (OpenVINO's bfloat16 "
            "inference for the graphs it runs; CPUs with AVX512-BF16 or AMX such as ml.c7i), `int8` (the `--int8` "
            "graphs), or `auto` (the fastest tier whose recorded parity passes the gate, see \"CPU precision "
            "tiers\"; f32 for random weights). A tier the CPU or model cannot run is a start-up error naming why; "
            f"GPU providers ignore it (`SAM_PRECISION` applies there). `{OLD_CPU_PRECISION_VAR}` is its old name")
    openvino: OpenVinoOptions = field(default_factory=OpenVinoOptions)
    cache_bytes: int | None = env_field(
        None, "SAM_CACHE_BYTES", positive(parse_bytes),
        shown=f"{format_bytes(DEFAULT_CACHE_BYTES_GPU)} on GPU, {format_bytes(DEFAULT_CACHE_BYTES_CPU)} on CPU "
              "(`deploy_to_sagemaker.sh` sets a quarter of the instance's memory, 512 MiB to 8 GiB)",
        doc="embedding cache budget (`512MiB`, `2GiB`, ...)")
    device_memory: DeviceMemorySettings = field(default_factory=DeviceMemorySettings)
    max_image_pixels: int = env_field(DEFAULT_MAX_PIXELS, "SAM_MAX_IMAGE_PIXELS", positive(int),
                                      doc="larger photos are refused (413)")
    max_jpeg_scans: int = env_field(DEFAULT_MAX_JPEG_SCANS, "SAM_MAX_JPEG_SCANS", positive(int),
                                    doc="progressive JPEGs with more scans are refused before decoding (each scan is "
                                        "a decode pass)")
    max_clicks: int = env_field(64, "SAM_MAX_CLICKS", positive(int), doc="points per request")
    cpu_decoder_prompts_per_run: int = env_field(
        1, "SAM_CPU_DECODER_PROMPTS_PER_RUN", positive(int),
        doc="on CPU the decoder runs a request's prompts in slices of this many (its working memory grows with a "
            "run's prompts). At 1 each prompt runs alone, so its answer never depends on the other prompts of its "
            "request (ONNX Runtime's sums differ in the last bits with a run's size) and an answer built from "
            "reused prompts is byte-equal to a fresh one; more batches prompts, at that cost")
    prompt_cache_bytes_per_image: int = env_field(
        32 << 20, "SAM_PROMPT_CACHE_BYTES_PER_IMAGE", parse_bytes,
        doc="CPU tier: bytes of decoded prompts (1 MiB each) kept with each cached image, charged to the embedding "
            "cache, so a request that resends earlier clicks decodes only the new ones; `/stats` `prompt_cache` and "
            "the answer's `timings_ms` (`prompts_decoded`, `prompts_reused`) count them; 0 turns it off")
    verify_model_checksums: bool = env_field(True, "SAM_VERIFY_MODEL_SHA256", parse_bool,
                                             doc="check model files against the manifest at start-up")
    ort_profile_dir: str | None = env_field(
        None, "SAM_ORT_PROFILE_DIR", str,
        doc="diagnostics: ONNX Runtime's profiler writes each session's node timings and placement (execution "
            "provider per node) here; `benchmarks/gpu_placement.py` reads them")
    #: The shared embedding tier (Valkey/Redis), or None without SAM_SHARED_CACHE_URL.
    shared_cache: SharedCacheConfig | None = None

    def cache_budget(self, on_gpu: bool) -> int:
        """The embedding cache budget in bytes: configured, or the default for the device."""
        if self.cache_bytes is not None:
            return self.cache_bytes
        return DEFAULT_CACHE_BYTES_GPU if on_gpu else DEFAULT_CACHE_BYTES_CPU

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RuntimeSettings:
        """Read the ``SAM_*`` variables (see the README's configuration table)."""
        providers = ProviderConfig(tensorrt=_tensorrt(environ), cuda=CudaOptions(**read_fields(CudaOptions, environ)),
                                   cpu=CpuOptions(**read_fields(CpuOptions, environ)),
                                   **read_fields(ProviderConfig, environ))
        return cls(providers=providers, openvino=OpenVinoOptions(**read_fields(OpenVinoOptions, environ)),
                   device_memory=DeviceMemorySettings(**read_fields(DeviceMemorySettings, environ)),
                   shared_cache=_shared_cache(environ),
                   **read_fields(cls, environ, {"cpu_precision": _cpu_precision_by_old_name(environ)}))


def _tensorrt(environ: Mapping[str, str]) -> TensorRTOptions:
    """The SAM_TRT_* settings; values that do not fit together name the group."""
    try:
        return TensorRTOptions(**read_fields(TensorRTOptions, environ))
    except ValueError as exc:
        if "environment variable" in str(exc):
            raise
        raise ValueError(f"TensorRT settings (SAM_TRT_*) are inconsistent: {exc}") from exc


def _cpu_precision_by_old_name(environ: Mapping[str, str]) -> Any:
    """SAM_CPU_PRECISION's default: its old name's value when that is set (else the declared
    default); both set must agree."""
    new_var = env_name(RuntimeSettings, "cpu_precision")
    new = read_env(environ, new_var, parse_cpu_precision, None)
    old = read_env(environ, OLD_CPU_PRECISION_VAR, parse_cpu_precision, None)
    if new is not None and old is not None and new != old:
        raise ValueError(f"{new_var}={new} and its old name {OLD_CPU_PRECISION_VAR}={old} disagree: "
                         f"set {new_var} only")
    return old if old is not None else RuntimeSettings.cpu_precision


def _shared_cache(environ: Mapping[str, str]) -> SharedCacheConfig | None:
    """The SAM_SHARED_CACHE_* settings, or None when SAM_SHARED_CACHE_URL is unset."""
    store = read_fields(SharedStoreSettings, environ, {"url": None})
    source = read_fields(SharedCacheConfig, environ)
    if store["url"] is None:
        if source["secret_id"] or source["password_file"]:
            raise ValueError("SAM_SHARED_CACHE_SECRET_ID / SAM_SHARED_CACHE_PASSWORD_FILE need SAM_SHARED_CACHE_URL")
        return None
    if source["secret_id"] and source["password_file"]:
        raise ValueError("set SAM_SHARED_CACHE_SECRET_ID or SAM_SHARED_CACHE_PASSWORD_FILE, not both")
    return SharedCacheConfig(SharedStoreSettings(**store), **source)
