"""Opening a model directory's graphs as the engine's runners (``SamEngine.from_model_dir``'s steps).

``usable_providers`` finds the configured providers that can start here, ``checked_prepost``
where pre- and post-processing run, and ``GraphOpener`` opens each graph (ONNX Runtime on the
chosen providers, or OpenVINO) as the runner the engine calls.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import onnxruntime as ort

from runtime import gpu_libraries, gpu_setup, openvino_runner, ort_runner
from runtime.cpu_backends import BackendName
from runtime.cpu_precision import CpuPrecision
from runtime.device_memory import DeviceMemoryPlan
from runtime.errors import ModelLoadError
from runtime.gpu_jpeg_reader import GpuJpegReader
from runtime.graph_runners import OrtMaskRenderer, OrtPreprocessor
from runtime.manifest import Manifest
from runtime.prepost_choice import Implementation, Stage, choose_prepost
from runtime.preprocessors import ImagePreprocessor
from runtime.providers import GPU_PROVIDERS, ORT_NAMES, ProviderName, resolve_providers, wanted_providers
from runtime.render import MaskRenderer
from runtime.settings import RuntimeSettings

if TYPE_CHECKING:  # the engine imports this module: its runner protocols are for annotations only
    from runtime.engine import DecoderRunner, EncoderRunner

log = logging.getLogger("runtime.engine")



def usable_providers(settings: RuntimeSettings) -> tuple[ProviderName, ...]:
    """The configured providers this ONNX Runtime build has and can load (GPU libraries preloaded
    first when a GPU provider is wanted), in preference order."""
    available = ort.get_available_providers()
    if any(name in GPU_PROVIDERS and ORT_NAMES[name] in available for name in wanted_providers(settings.providers)):
        ort_runner.preload_gpu_libraries()
    unloadable = gpu_libraries.unloadable_providers(settings.providers, available)
    return resolve_providers(settings.providers, available, unloadable)


def checked_prepost(model_dir: Path, manifest: Manifest, settings: RuntimeSettings,
                     on_gpu: bool) -> dict[Stage, Implementation]:
    """Where pre- and post-processing run (``runtime.prepost_choice``); a choice the export cannot serve
    is a ``ModelLoadError``, and a GPU without the graphs a warning."""
    try:
        prepost = choose_prepost(settings.cpu_prepost, on_gpu, manifest.has_prepost_graphs)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    if on_gpu and not manifest.has_prepost_graphs:
        log.warning("%s has no preprocess/postprocess graphs (an older export): pre- and post-processing run "
                    "on the CPU; export again to keep requests on the GPU", model_dir)
    return prepost


@dataclass(frozen=True)
class GraphOpener:
    """Opens one model directory's graphs as runners: ONNX Runtime sessions on the given providers
    (CPU graphs of precision tier ``tier``), or OpenVINO where that engine was chosen."""

    model_dir: Path
    manifest: Manifest
    settings: RuntimeSettings
    tier: CpuPrecision

    @property
    def device_id(self) -> int:
        return self.settings.providers.cuda.device_id

    def encoder(self, backend: BackendName, providers: tuple[ProviderName, ...]) -> EncoderRunner:
        """The image encoder's runner."""
        if backend == "openvino":
            return openvino_runner.OpenVinoEncoder(
                openvino_runner.compile_graph(self.model_dir, self.manifest, "encoder", self.settings, self.tier))
        session, active = ort_runner.open_session(self.model_dir, self.manifest, "encoder", providers, self.settings,
                                                  self.tier)
        return ort_runner.OrtEncoder(session, active, self.device_id)

    def preprocessor(self, providers: tuple[ProviderName, ...]) -> ImagePreprocessor:
        """The preprocess graph's runner, with the GPU JPEG decoder when it runs on a GPU."""
        session, active = ort_runner.open_session(self.model_dir, self.manifest, "preprocess", providers,
                                                  self.settings)
        jpeg = GpuJpegReader.create(self.device_id) if active in GPU_PROVIDERS else None
        return OrtPreprocessor(session, active, self.manifest.image_size, self.device_id, jpeg)

    def renderer(self, providers: tuple[ProviderName, ...], plan: DeviceMemoryPlan | None) -> MaskRenderer:
        """The postprocess graph's runner, with the render slots ``plan`` allows."""
        session, active = ort_runner.open_session(self.model_dir, self.manifest, "postprocess", providers,
                                                  self.settings,
                                                  arena_limit_bytes=gpu_setup.arena_limit(plan, "postprocess",
                                                                                          self.settings))
        return OrtMaskRenderer(session, active, self.device_id, *gpu_setup.render_limits(plan, self.settings))

    def decoder(self, backend: BackendName, providers: tuple[ProviderName, ...],
                renderer: MaskRenderer | None) -> DecoderRunner:
        """The prompt decoder's runner; its logits stay on the device when ``renderer`` runs there."""
        if backend == "openvino":
            return openvino_runner.OpenVinoDecoder(
                openvino_runner.compile_graph(self.model_dir, self.manifest, "decoder", self.settings, self.tier,
                                              openvino_runner.static_decoder_shapes(self.tier)))
        session, active = ort_runner.open_session(self.model_dir, self.manifest, "decoder", providers, self.settings,
                                                  self.tier)
        logits_on_device = renderer is not None and renderer.provider in GPU_PROVIDERS
        return ort_runner.OrtDecoder(session, active, self.device_id, logits_on_device,
                                     self.settings.providers.cpu.memory_arena)
