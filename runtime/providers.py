"""ONNX Runtime execution providers: choice, options, and the check after session creation.

ONNX Runtime quietly falls back to CPU when TensorRT or CUDA cannot be loaded, so after a
session is created we compare ``session.get_providers()`` with what was asked, log what is
really in use, and raise ``ProviderUnavailable`` when the configuration requires a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from runtime.env_values import env_field, parse_bool, parse_bytes, positive
from runtime.errors import ProviderUnavailable

log = logging.getLogger(__name__)

ProviderName = Literal["tensorrt", "cuda", "cpu"]
#: A graph of the export: the model (encoder, decoder) or the pre/post-processing and cut-out resize around it.
Role = Literal["encoder", "decoder", "preprocess", "postprocess", "cutout_resize"]

ORT_NAMES: dict[ProviderName, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
AUTO_ORDER: tuple[ProviderName, ...] = ("tensorrt", "cuda", "cpu")
GPU_PROVIDERS: frozenset[ProviderName] = frozenset({"tensorrt", "cuda"})


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT EP options. Engines are tied to GPU model, TensorRT version, precision and profile.

    The decoder's optimization profile covers 1..``max_prompts`` prompts of
    1..``max_points`` points (clicks plus the padding point or two box corners).
    """

    fp16: bool = env_field(True, "SAM_TRT_FP16", parse_bool, doc="TensorRT builds its engines in fp16")
    engine_cache: bool = env_field(
        True, "SAM_TRT_ENGINE_CACHE", parse_bool,
        doc="TensorRT keeps built engines in `SAM_TRT_CACHE_DIR` (engines are tied to GPU model, TensorRT version, "
            "precision and profile)")
    cache_dir: str = env_field(
        "/tmp/sam-trt-cache", "SAM_TRT_CACHE_DIR", str,
        doc="TensorRT's engine and timing caches. A model directory may ship built engines in `trt-cache/` (copy "
            "this directory after a first start on the same instance type and image): they are copied into the "
            "cache at start-up, so a new instance skips the build (`runtime/trt_cache.py`)")
    timing_cache: bool = env_field(True, "SAM_TRT_TIMING_CACHE", parse_bool,
                                   doc="TensorRT keeps its timing cache in `SAM_TRT_CACHE_DIR`")
    max_workspace_bytes: int = env_field(2 << 30, "SAM_TRT_MAX_WORKSPACE", positive(parse_bytes),
                                         doc="TensorRT builder: workspace memory")
    builder_optimization_level: int = env_field(3, "SAM_TRT_OPT_LEVEL", int,
                                                doc="TensorRT builder: optimization level, 0 to 5")
    max_prompts: int = env_field(64, "SAM_TRT_MAX_PROMPTS", positive(int),
                                 doc="the decoder's optimization profile: most prompts of one run")
    opt_prompts: int = env_field(8, "SAM_TRT_OPT_PROMPTS", positive(int),
                                 doc="the decoder's optimization profile: the prompts TensorRT tunes for")
    max_points: int = env_field(16, "SAM_TRT_MAX_POINTS", positive(int),
                                doc="the decoder's optimization profile: most points of a prompt (clicks plus "
                                    "the padding point)")
    cuda_graph: bool = env_field(False, "SAM_TRT_CUDA_GRAPH", parse_bool,
                                 doc="TensorRT captures its runs as CUDA graphs")
    layer_norm_fp32_fallback: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.opt_prompts <= self.max_prompts:
            raise ValueError("TensorRT opt_prompts must be within 1..max_prompts")
        if self.max_points < 2:
            raise ValueError("TensorRT max_points must be at least 2 (a click plus the padding point)")
        if not 0 <= self.builder_optimization_level <= 5:
            raise ValueError("TensorRT builder_optimization_level must be within 0..5")

    def provider_options(self, role: Role, device_id: int = 0) -> dict[str, str]:
        """The TensorRT EP option dictionary for one graph on CUDA device ``device_id`` (strings, as
        ONNX Runtime expects; the device is the CUDA EP's, ``SAM_CUDA_DEVICE_ID``)."""
        options = {
            "device_id": str(device_id),
            "trt_fp16_enable": _flag(self.fp16),
            "trt_engine_cache_enable": _flag(self.engine_cache),
            "trt_engine_cache_path": self.cache_dir,
            "trt_timing_cache_enable": _flag(self.timing_cache),
            "trt_timing_cache_path": self.cache_dir,
            "trt_max_workspace_size": str(self.max_workspace_bytes),
            "trt_builder_optimization_level": str(self.builder_optimization_level),
            "trt_cuda_graph_enable": _flag(self.cuda_graph),
            "trt_layer_norm_fp32_fallback": _flag(self.layer_norm_fp32_fallback),
        }
        if role == "decoder":
            options.update(self.decoder_profiles())
        return options

    def decoder_profiles(self) -> dict[str, str]:
        """min/opt/max shapes for every dynamic decoder input (all three must be given)."""

        def shapes(prompts: int, points: int) -> str:
            return ",".join((
                "image_embeddings:1x256x64x64",
                f"point_coords:{prompts}x{points}x2",
                f"point_labels:{prompts}x{points}",
                f"mask_input:{prompts}x1x256x256",
                f"has_mask_input:{prompts}",
            ))

        return {
            "trt_profile_min_shapes": shapes(1, 1),
            "trt_profile_opt_shapes": shapes(self.opt_prompts, 2),
            "trt_profile_max_shapes": shapes(self.max_prompts, self.max_points),
        }


@dataclass(frozen=True)
class CudaOptions:
    """CUDA EP options."""

    device_id: int = env_field(0, "SAM_CUDA_DEVICE_ID", int, doc="the CUDA device every graph runs on")
    gpu_mem_limit_bytes: int | None = env_field(None, "SAM_CUDA_MEM_LIMIT", positive(parse_bytes),
                                                doc="the CUDA provider's memory arena limit")
    arena_extend_strategy: Literal["kNextPowerOfTwo", "kSameAsRequested"] = "kSameAsRequested"
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"

    def provider_options(self, arena_limit_bytes: int | None = None) -> dict[str, str]:
        """The CUDA EP option dictionary. ``arena_limit_bytes``: this session's planned arena cap
        (``runtime.device_memory.arena_limits``); with ``SAM_CUDA_MEM_LIMIT`` too, the smaller one."""
        options = {
            "device_id": str(self.device_id),
            "arena_extend_strategy": self.arena_extend_strategy,
            "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
            "do_copy_in_default_stream": "1",
        }
        limits = [limit for limit in (self.gpu_mem_limit_bytes, arena_limit_bytes) if limit is not None]
        if limits:
            options["gpu_mem_limit"] = str(min(limits))
        return options


@dataclass(frozen=True)
class CpuOptions:
    """CPU EP / session options. ``intra_op_threads`` 0 lets ONNX Runtime use every core.

    ``spinning``: the decoder's idle pool threads busy-wait for the next parallel section
    (lower latency, but they burn cores that other processes on a small instance could
    use). The encoder's pool never spins (see ``runtime.ort_runner.session_options``).
    """

    intra_op_threads: int = env_field(0, "SAM_CPU_THREADS", int, shown="0 (all cores)", doc="CPU provider threads")
    inter_op_threads: int = 1
    memory_arena: bool = env_field(True, "SAM_CPU_ARENA", parse_bool,
                                   doc="CPU provider memory arena (the decoder's arena hands its memory back after "
                                       "each run)")
    spinning: bool = env_field(True, "SAM_CPU_SPINNING", parse_bool,
                               doc="the decoder's idle pool threads busy-wait (turn off when other processes share "
                                   "the cores; the encoder's pool never spins)")

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0")


def parse_providers(text: str) -> tuple[ProviderName, ...] | Literal["auto"]:
    """'auto' or a comma-separated order of tensorrt, cuda, cpu."""
    if text.strip().lower() == "auto":
        return "auto"
    names = tuple(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in AUTO_ORDER]
    if unknown or not names:
        raise ValueError(f"{text!r}: expected 'auto' or a list of {', '.join(AUTO_ORDER)}")
    return cast(tuple[ProviderName, ...], names)


@dataclass(frozen=True)
class ProviderConfig:
    """Which providers to use (``auto`` or an explicit order) and their options."""

    requested: tuple[ProviderName, ...] | Literal["auto"] = env_field(
        "auto", "SAM_PROVIDERS", parse_providers,
        doc="`auto` (TensorRT when `libnvinfer.so.10` loads, CUDA, CPU as available) or an order such as `cuda,cpu`")
    require_gpu: bool = env_field(False, "SAM_REQUIRE_GPU", parse_bool, shown="`false` (`true` in the GPU image)",
                                  doc="fail at start-up instead of running on CPU")
    tensorrt: TensorRTOptions = field(default_factory=TensorRTOptions)
    cuda: CudaOptions = field(default_factory=CudaOptions)
    cpu: CpuOptions = field(default_factory=CpuOptions)


def wanted_providers(config: ProviderConfig) -> tuple[ProviderName, ...]:
    """The providers the configuration asks for, best first, before checking what is installed."""
    return AUTO_ORDER if config.requested == "auto" else config.requested


def resolve_providers(config: ProviderConfig, available: Sequence[str],
                      unloadable: Mapping[ProviderName, str] | None = None) -> tuple[ProviderName, ...]:
    """The providers to ask ONNX Runtime for, best first, given the ones its build offers.

    ``auto``: TensorRT, CUDA, CPU, keeping those available. An explicit list keeps its
    order; unavailable entries are dropped with a warning. ``unloadable`` maps providers
    that the build lists but whose libraries cannot load (``runtime.gpu_libraries``) to the
    reason: they are left out with one log line naming it, so ONNX Runtime never tries
    them (and never prints its fallback banner). CPU always ends the list unless a GPU is
    required, so a session can always be created.
    """
    unloadable = unloadable or {}
    wanted = wanted_providers(config)
    chosen: list[ProviderName] = []
    for name in wanted:
        if ORT_NAMES[name] in available and name in unloadable:
            level = logging.INFO if config.requested == "auto" else logging.WARNING
            log.log(level, "%s left out: %s", ORT_NAMES[name], unloadable[name])
        elif ORT_NAMES[name] in available:
            chosen.append(name)
        elif config.requested != "auto":
            log.warning("execution provider %s is not available in this ONNX Runtime build (%s)",
                        name, ", ".join(available))
    if config.require_gpu:
        if not any(name in GPU_PROVIDERS for name in chosen):
            reasons = "".join(f"; {ORT_NAMES[n]}: {why}" for n, why in unloadable.items())
            raise ProviderUnavailable(
                f"a GPU provider is required but none of {[ORT_NAMES[n] for n in wanted]} is available "
                f"(this ONNX Runtime offers {list(available)}{reasons}); install onnxruntime-gpu with CUDA and cuDNN"
            )
        return tuple(name for name in chosen if name in GPU_PROVIDERS)
    if "cpu" not in chosen:
        chosen.append("cpu")
    return tuple(chosen)


def provider_arguments(config: ProviderConfig, providers: Sequence[ProviderName], role: Role,
                       arena_limit_bytes: int | None = None) -> list[tuple[str, dict[str, str]]]:
    """The ``providers=`` argument of ``InferenceSession`` for one graph (``arena_limit_bytes``: its
    CUDA arena's cap, see ``CudaOptions.provider_options``)."""
    arguments: list[tuple[str, dict[str, str]]] = []
    for name in providers:
        if name == "tensorrt":
            arguments.append((ORT_NAMES[name], config.tensorrt.provider_options(role, config.cuda.device_id)))
        elif name == "cuda":
            arguments.append((ORT_NAMES[name], config.cuda.provider_options(arena_limit_bytes)))
        else:
            arguments.append((ORT_NAMES[name], {}))
    return arguments


def check_active(role: Role, active: Sequence[str], requested: Sequence[ProviderName], config: ProviderConfig) -> ProviderName:
    """Compare a session's ``get_providers()`` with the request; return the provider in charge.

    Logs the providers really in use, warns when the best requested one did not load, and
    raises ``ProviderUnavailable`` when a GPU is required and the session runs on CPU only.
    """
    by_ort = {ort_name: name for name, ort_name in ORT_NAMES.items()}
    in_use = [by_ort[p] for p in active if p in by_ort]
    if not in_use:
        raise ProviderUnavailable(f"{role} session reports no known provider: {list(active)}")
    log.info("%s session providers: %s", role, ", ".join(in_use))
    if requested and in_use[0] != requested[0]:
        log.warning("%s: requested %s first but ONNX Runtime is using %s (missing libraries?)",
                    role, requested[0], in_use[0])
    if config.require_gpu and in_use[0] not in GPU_PROVIDERS:
        raise ProviderUnavailable(
            f"{role} session fell back to {ORT_NAMES[in_use[0]]} although a GPU provider is required: "
            "check the CUDA, cuDNN and TensorRT libraries on the library path"
        )
    return in_use[0]


def _flag(value: bool) -> str:
    return "1" if value else "0"
