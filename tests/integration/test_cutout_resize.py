"""The exported ``cutout_resize.onnx`` through the serving code path (issue 21, defect 5), on the CPU EP.

On a GPU the engine resizes a device-decoded photo to the cut-out's size before the copy to
the host; the runner is built here with the CPU EP (as ``gpu_setup.open_cutout_resizer`` builds
it for the CUDA EP) and served through ``HoldExtractor``, against the CPU path's Pillow resize.
The same checks on a GPU: tests/gpu/test_gpu_prepost.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from runtime import gpu_setup
from runtime.cache import EmbeddingCache
from runtime.cutout_resize import MAX_BORDER_LEVELS_FROM_PILLOW, MAX_LEVELS_FROM_PILLOW, OrtCutoutResizer
from runtime.device_memory import CUTOUT_STAGING_KEEP_BYTES, cutout_copy_bytes
from runtime.engine import SamEngine
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.host_staging import PageableAllocator, StagingBuffer
from runtime.manifest import CUTOUT_RESIZE_INPUTS, CUTOUT_RESIZE_OUTPUTS, load_manifest
from runtime.preprocessors import LoadedImage
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode

CPU = RuntimeSettings(cpu_engine="onnxruntime")


@pytest.fixture(scope="module")
def cpu_resizer(tiny_model_dir: Path) -> OrtCutoutResizer:
    manifest = load_manifest(tiny_model_dir, verify_checksums=False)
    resizer = gpu_setup.open_cutout_resizer(tiny_model_dir, manifest, ("cpu",), CPU)
    assert resizer is not None and resizer.provider == "cpu"
    return resizer


def _levels_from_pillow(got: Image.Image, photo: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    want = Image.fromarray(photo).resize((out_hw[1], out_hw[0]), Image.Resampling.BILINEAR)
    assert (got.height, got.width) == out_hw and got.mode == "RGB"
    return np.abs(np.asarray(got, np.int64) - np.asarray(want, np.int64))


def test_the_export_lists_the_graph_with_its_signature(tiny_model_dir: Path) -> None:
    entry = load_manifest(tiny_model_dir).models["cutout_resize"]
    assert entry.file == "cutout_resize.onnx" and entry.precision == "fp32"
    assert tuple(t.name for t in entry.inputs) == CUTOUT_RESIZE_INPUTS
    assert tuple(t.name for t in entry.outputs) == CUTOUT_RESIZE_OUTPUTS
    assert [t.dtype for t in entry.inputs] == ["uint8", "int64"] and entry.outputs[0].dtype == "uint8"


@pytest.mark.parametrize(("photo_hw", "out_hw"), [((480, 640), (240, 320)), ((301, 417), (97, 133)),
                                                   ((120, 90), (240, 180)), ((200, 150), (200, 150))])
def test_the_runner_gives_pillows_pixels_within_the_stated_bound(
        cpu_resizer: OrtCutoutResizer, photo_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
    """One graph serves every size; one level inside the border, the border's bound outside."""
    photo = synthetic_image(photo_hw, seed=photo_hw[1])
    got = cpu_resizer.resize(LoadedImage.from_pil(Image.fromarray(photo)), out_hw)
    assert got is not None
    difference = _levels_from_pillow(got, photo, out_hw)
    assert difference[1:-1, 1:-1].max() <= MAX_LEVELS_FROM_PILLOW
    assert difference.max() <= MAX_BORDER_LEVELS_FROM_PILLOW
    assert cpu_resizer.copied_bytes == cutout_copy_bytes(out_hw)


def test_one_buffer_serves_requests_up_to_its_bound(tiny_model_dir: Path) -> None:
    manifest = load_manifest(tiny_model_dir, verify_checksums=False)
    session = ort.InferenceSession(str(tiny_model_dir / manifest.models["cutout_resize"].file),
                                   providers=["CPUExecutionProvider"])
    resizer = OrtCutoutResizer(session, "cpu", StagingBuffer(PageableAllocator(), CUTOUT_STAGING_KEEP_BYTES))
    photo = LoadedImage.from_pil(Image.fromarray(synthetic_image((300, 400), 5)))
    first = resizer.resize(photo, (150, 200))
    assert first is not None
    snapshot = np.array(first)
    second = resizer.resize(photo, (90, 120))
    again = resizer.resize(photo, (120, 160))
    assert second is not None and again is not None
    assert np.array_equal(np.asarray(first), snapshot)  # a copy out, not a view of the reused buffer
    assert resizer.staging.allocations == 1 and resizer.staging.capacity_bytes == cutout_copy_bytes((150, 200))


def test_a_gpu_runner_leaves_a_photo_on_the_host_to_the_host(tiny_model_dir: Path) -> None:
    """A photo Pillow decoded is not uploaded to be resized: the runner answers None and the host resizes."""
    session = ort.InferenceSession(str(tiny_model_dir / "cutout_resize.onnx"), providers=["CPUExecutionProvider"])
    resizer = OrtCutoutResizer(session, "cuda", StagingBuffer(PageableAllocator(), 1 << 20))
    assert resizer.resize(LoadedImage.from_pil(Image.new("RGB", (40, 30))), (15, 20)) is None
    assert resizer.staging.allocations == 0


def test_served_cut_out_pixels_come_from_the_graph(tiny_model_dir: Path, cpu_resizer: OrtCutoutResizer) -> None:
    """Through HoldExtractor: with the runner the engine's resize serves the pixels (the host's
    resize is skipped); they match the CPU path's within the bound, and the masks are the same."""
    photo = synthetic_image((600, 800), 7)
    data = encode(photo, "JPEG", quality=95)
    request = ExtractRequest((Click(200.0, 150.0), Click(600.0, 400.0)), image_bytes=data,
                             options=ExtractOptions(max_output_side=500))
    host = HoldExtractor(SamEngine.from_model_dir(tiny_model_dir, CPU), EmbeddingCache(64 << 20)).extract(request)
    engine = SamEngine.from_model_dir(tiny_model_dir, CPU)
    assert engine.cutout is None  # the CPU path stays as it was: the host resizes
    engine.cutout = cpu_resizer
    cpu_resizer.copied_bytes = 0
    served = HoldExtractor(engine, EmbeddingCache(64 << 20)).extract(request)
    assert served.out_size_hw == host.out_size_hw == (375, 500)
    assert cpu_resizer.copied_bytes == cutout_copy_bytes((375, 500))
    assert served.rgb is not None and host.rgb is not None
    difference = np.abs(np.asarray(served.rgb, np.int64) - np.asarray(host.rgb, np.int64))
    assert difference[1:-1, 1:-1].max() <= MAX_LEVELS_FROM_PILLOW
    assert difference.max() <= MAX_BORDER_LEVELS_FROM_PILLOW
    assert np.array_equal(served.mask, host.mask)
