"""The request that stays on the GPU: pre/post graphs on the CUDA EP, device-resident logits, nvJPEG decoding.

Skipped without a CUDA provider (and the nvJPEG tests without nvImageCodec). The same graphs
are tested on the CPU EP in tests/integration/test_prepost_graphs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from runtime.cache import EmbeddingCache
from runtime.cutout_resize import MAX_BORDER_LEVELS_FROM_PILLOW, MAX_LEVELS_FROM_PILLOW
from runtime.device_memory import arena_limits, cutout_copy_bytes
from runtime.engine import SamEngine
from runtime.errors import PayloadTooLarge
from runtime.graph_runners import OrtMaskRenderer
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor, build_prompts
from runtime.image_files import ImageLimits, probe_image, read_image
from runtime.masks import mask_iou
from runtime.providers import ProviderConfig
from runtime.sam_preprocessing import to_model_coords
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode, old_service_masks

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                       reason="no CUDA execution provider: onnxruntime-gpu with a CUDA GPU is not present on this machine"),
]

CUDA = RuntimeSettings(providers=ProviderConfig(requested=("cuda",), require_gpu=True), precision="fp32")


@pytest.fixture(scope="module")
def gpu_engine(tiny_model_dir: Path) -> SamEngine:
    return SamEngine.from_model_dir(tiny_model_dir, CUDA)


def _profiled_providers(model: Path, feeds: dict[str, np.ndarray], tmp_path: Path) -> dict[str, set[str]]:
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(str(model), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    placed: dict[str, set[str]] = {}
    for event in events:
        args = event.get("args", {})
        if "op_name" in args and "provider" in args:
            placed.setdefault(args["op_name"], set()).add(args["provider"])
    return placed


def test_graph_compute_runs_on_the_cuda_ep(tiny_model_dir: Path, tmp_path: Path) -> None:
    pre = _profiled_providers(tiny_model_dir / "preprocess.onnx", {
        "image_hwc": synthetic_image((3024, 4032), 1), "input_size_hw": np.array([768, 1024], np.int64)}, tmp_path)
    logits = np.random.default_rng(0).normal(size=(3, 4, 256, 256)).astype(np.float32)
    post = _profiled_providers(tiny_model_dir / "postprocess.onnx", {
        "low_res_masks": logits, "mask_indices": np.array([0, 4, 8], np.int64), "input_size_hw": np.array([768, 1024], np.int64),
        "output_size_hw": np.array([3024, 4032], np.int64), "min_area": np.array(0, np.int64)}, tmp_path)
    for op in ("Cast", "Resize", "Sub", "Div", "Pad"):
        assert pre[op] == {"CUDAExecutionProvider"}, (op, pre[op])
    for op in ("Gather", "Resize", "Greater", "ReduceSum", "ReduceMax", "Mul", "Pad", "Cast"):
        assert post[op] == {"CUDAExecutionProvider"}, (op, post[op])
    cutout = _profiled_providers(tiny_model_dir / "cutout_resize.onnx", {
        "image_hwc": synthetic_image((3024, 4032), 1), "output_size_hw": np.array([1512, 2016], np.int64)}, tmp_path)
    for op in ("Cast", "Resize", "Round", "Clip"):
        assert cutout[op] == {"CUDAExecutionProvider"}, (op, cutout[op])


def test_cuda_graphs_equal_the_cpu_ep(gpu_engine: SamEngine, tiny_model_dir: Path) -> None:
    cpu = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine="onnxruntime", cpu_prepost="graph"))
    image = Image.fromarray(synthetic_image((1500, 2000), 2))
    on_gpu = gpu_engine.prepare(image)
    assert isinstance(on_gpu.tensor, ort.OrtValue) and on_gpu.tensor.device_name().lower() == "cuda"
    # Compare in pixel levels: the graph rounds before normalizing, so a value that rounds the other
    # way differs by one level (1/std, about 1/57 after normalizing), never more, and rarely.
    mean = np.asarray(gpu_engine.manifest.pixel_mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(gpu_engine.manifest.pixel_std, np.float32).reshape(1, 3, 1, 1)
    levels_gpu = on_gpu.tensor.numpy() * std + mean
    levels_cpu = np.asarray(cpu.prepare(image).tensor) * std + mean
    differ = np.abs(levels_gpu - levels_cpu)
    assert differ.max() <= 1.0 + 1e-3 and float(np.mean(differ > 0.5)) < 1e-3
    logits = np.random.default_rng(1).normal(size=(4, 4, 256, 256)).astype(np.float32)
    indices = np.arange(4, dtype=np.int64) * 4
    assert isinstance(gpu_engine.renderer, OrtMaskRenderer)
    a = gpu_engine.renderer.render(logits, indices, (768, 1024), (1500, 2000), 0, True)
    b = cpu.renderer.render(logits, indices, (768, 1024), (1500, 2000), 0, True)
    np.testing.assert_array_equal(a.union.packed(), b.union.packed())
    np.testing.assert_array_equal(a.areas, b.areas)


def test_embedding_and_logits_stay_on_the_device(gpu_engine: SamEngine) -> None:
    assert gpu_engine.backends == {"encoder": "onnxruntime", "decoder": "onnxruntime",
                                  "preprocess": "onnxruntime", "postprocess": "onnxruntime"}
    embedding = gpu_engine.encode(gpu_engine.prepare(Image.fromarray(synthetic_image((480, 640), 3))))
    assert isinstance(embedding.value, ort.OrtValue) and embedding.value.device_name().lower() == "cuda"
    coords, labels, _ = build_prompts((Click(100.0, 100.0), Click(300.0, 200.0)), None, "per_click")
    decoded = gpu_engine.decode(embedding.value, to_model_coords(coords, (480, 640), 1024), labels)
    assert isinstance(decoded.low_res_masks, ort.OrtValue) and decoded.low_res_masks.device_name().lower() == "cuda"
    assert isinstance(decoded.iou_predictions, np.ndarray)


def test_gpu_served_masks_equal_sam_predictor(gpu_engine: SamEngine, tiny_sam) -> None:  # type: ignore[no-untyped-def]
    image = synthetic_image((900, 1200), 4)
    clicks = (Click(100.0, 200.0), Click(700.0, 400.0), Click(1100.0, 800.0))
    extractor = HoldExtractor(gpu_engine, EmbeddingCache(64 << 20))
    for data in (encode(image), encode(image, "JPEG", quality=95)):
        result = extractor.extract(ExtractRequest(clicks, image_bytes=data, options=ExtractOptions(per_click_masks=True)))
        reference = np.asarray(read_image(data))
        union, per_click = old_service_masks(tiny_sam, reference, [(c.x, c.y) for c in clicks])
        assert result.prompt_masks is not None
        assert min(mask_iou(a, b) for a, b in zip(result.prompt_masks, per_click)) >= 0.99
        assert mask_iou(result.mask, union) >= 0.99


def test_nvjpeg_decodes_jpegs_on_the_device_close_to_pillow(gpu_engine: SamEngine) -> None:
    pytest.importorskip("nvidia.nvimgcodec", reason="nvImageCodec (nvidia-nvimgcodec-cu12) is not installed")
    from runtime.gpu_jpeg_reader import GpuJpegReader

    decoder = GpuJpegReader.create(0)
    assert decoder is not None
    upright = synthetic_image((600, 800), 5)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = encode(Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))), "JPEG", quality=92, exif=exif)
    loaded = gpu_engine.load_image(rotated, ImageLimits())
    assert loaded.device is not None and loaded.size_hw == (600, 800)
    pillow = np.asarray(read_image(rotated), dtype=np.int16)
    device = np.asarray(loaded.rgb(), dtype=np.int16)
    assert device.shape == pillow.shape and np.mean(np.abs(device - pillow) <= 1) >= 0.999
    png = gpu_engine.load_image(encode(upright), ImageLimits())
    assert png.device is None and png.host is not None  # every other format: Pillow


def test_limits_hold_before_any_device_work() -> None:
    data = encode(synthetic_image((400, 500), 6), "JPEG")
    assert probe_image(data).upright_size_hw == (400, 500)
    with pytest.raises(PayloadTooLarge):
        probe_image(data, ImageLimits(max_pixels=1000))


def test_the_cut_out_is_resized_on_the_device_and_only_its_pixels_come_back(gpu_engine: SamEngine) -> None:
    """Defect 5: the nvJPEG-decoded photo is resized by cutout_resize.onnx on the CUDA EP; only the
    output's pixels are copied, into one reused pinned buffer; they are the CPU path's within the bound."""
    pytest.importorskip("nvidia.nvimgcodec", reason="nvImageCodec (nvidia-nvimgcodec-cu12) is not installed")
    assert gpu_engine.cutout is not None and gpu_engine.cutout.provider == "cuda"
    assert gpu_engine.cutout.staging.allocator.kind == "pinned"
    data = encode(synthetic_image((1200, 1600), 8), "JPEG", quality=95)
    loaded = gpu_engine.load_image(data, ImageLimits())
    assert loaded.device is not None
    for out_hw in ((600, 800), (450, 600)):
        resized = gpu_engine.at_output_size(loaded, out_hw)
        assert resized is not None and resized.host is not None and resized.size_hw == out_hw
        assert loaded.host is None  # the whole photo never came to the host
        assert gpu_engine.cutout.copied_bytes == cutout_copy_bytes(out_hw)
        # The CPU path on the same decoded pixels (copied now, after the check above): Pillow's BILINEAR.
        want = loaded.rgb().resize((out_hw[1], out_hw[0]), Image.Resampling.BILINEAR)
        loaded.host = None
        difference = np.abs(np.asarray(resized.rgb(), np.int64) - np.asarray(want, np.int64))
        assert difference[1:-1, 1:-1].max() <= MAX_LEVELS_FROM_PILLOW
        assert difference.max() <= MAX_BORDER_LEVELS_FROM_PILLOW
    assert gpu_engine.cutout.staging.allocations == 1  # the second, smaller copy reused the buffer


def test_the_renderers_cuda_arena_is_capped_at_the_plans_render_share(gpu_engine: SamEngine) -> None:
    """The cap reaches the CUDA EP of the post-processing session (ONNX Runtime's own view of its options)."""
    assert gpu_engine.device_plan is not None and isinstance(gpu_engine.renderer, OrtMaskRenderer)
    options = gpu_engine.renderer._session.get_provider_options()["CUDAExecutionProvider"]
    assert options["gpu_mem_limit"] == str(arena_limits(gpu_engine.device_plan)["postprocess"])
    assert options["arena_extend_strategy"] == "kSameAsRequested"
    encoder = gpu_engine.encoder._session.get_provider_options()["CUDAExecutionProvider"]  # type: ignore[attr-defined]
    assert int(encoder["gpu_mem_limit"]) > int(options["gpu_mem_limit"])  # uncapped: ONNX Runtime's maximum
