"""The device-memory budget and the out-of-memory path, without a GPU.

The allocator limit is real: ONNX Runtime's BFC arena (the CUDA EP's allocator, capped there by
``gpu_mem_limit``) registered for the CPU EP with a small ``max_mem``, so a large render fails
inside ONNX Runtime exactly as a capped CUDA arena does.
"""
from __future__ import annotations

import functools
import io
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from runtime.cache import CachedImage, EmbeddingCache
from runtime.cuda_runtime import CudaError, CudaRuntime
from runtime.device_memory import (
    RENDER_BYTES_PER_PIXEL,
    DeviceMemorySettings,
    RenderSlots,
    is_out_of_memory,
    plan_device_memory,
    session_reserve_bytes,
)
from runtime.errors import DeviceMemoryExhausted
from runtime.graph_runners import OrtMaskRenderer
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from serving.errors import http_status

GIB = 1 << 30
#: The arena cap of the simulated device: a 2 MP render needs about 26 MB, a 24 MP one about 300 MB.
ARENA_CAP_BYTES = 96 << 20


def test_a_t4_budget_holds_sessions_renders_and_cache() -> None:
    total = 15 * GIB  # what a T4 reports (16 GB card, ECC and context reserved)
    reserved = session_reserve_bytes(180 << 20)  # vit_b fp16 encoder + decoder files
    plan = plan_device_memory(total, DeviceMemorySettings(), reserved, cache_bytes_wanted=8 * GIB)
    assert plan.budget_bytes == int(total * 0.85)
    assert plan.reserved_bytes == 3 * (180 << 20) + GIB
    working = plan.budget_bytes - plan.reserved_bytes
    assert plan.render_run_pixels == 128_000_000  # the full run size fits
    assert plan.render_slots == working // 2 // (128_000_000 * RENDER_BYTES_PER_PIXEL) == 3
    assert plan.cache_bytes == working - 3 * 128_000_000 * RENDER_BYTES_PER_PIXEL
    assert plan.reserved_bytes + plan.render_slots * plan.render_run_bytes + plan.cache_bytes <= plan.budget_bytes


@pytest.mark.parametrize("total_gib", [4, 8, 15, 24, 80])
@pytest.mark.parametrize("model_mib", [40, 180, 1300])
def test_the_plan_never_spends_more_than_the_budget(total_gib: int, model_mib: int) -> None:
    settings = DeviceMemorySettings(fraction=0.8, max_render_slots=8)
    reserved = session_reserve_bytes(model_mib << 20)
    try:
        plan = plan_device_memory(total_gib * GIB, settings, reserved, cache_bytes_wanted=2 * GIB)
    except ValueError as exc:
        assert "SAM_GPU_MEMORY_FRACTION" in str(exc) and total_gib <= 4
        return
    assert 1 <= plan.render_slots <= 8 and plan.cache_bytes > 0
    assert plan.cache_bytes <= 2 * GIB
    assert plan.reserved_bytes + plan.render_slots * plan.render_run_bytes + plan.cache_bytes <= plan.budget_bytes


def test_a_set_budget_overrides_the_fraction_and_small_budgets_shrink_the_runs() -> None:
    settings = DeviceMemorySettings(budget_bytes=3 * GIB, max_render_slots=8)
    plan = plan_device_memory(40 * GIB, settings, reserved_bytes=GIB, cache_bytes_wanted=4 * GIB)
    assert plan.budget_bytes == 3 * GIB
    assert plan.render_slots == 1 and plan.render_run_pixels == GIB // RENDER_BYTES_PER_PIXEL
    assert plan.cache_bytes == 2 * GIB - plan.render_run_bytes
    with pytest.raises(ValueError, match="SAM_GPU_MEMORY_BYTES"):
        plan_device_memory(40 * GIB, DeviceMemorySettings(budget_bytes=GIB), GIB, GIB)


def test_the_settings_read_the_budget_variables() -> None:
    settings = RuntimeSettings.from_env({"SAM_GPU_MEMORY_FRACTION": "0.6", "SAM_GPU_MEMORY_BYTES": "10GiB",
                                         "SAM_GPU_RENDER_SLOTS": "2", "SAM_GPU_RENDER_WAIT_S": "5"}).device_memory
    assert settings == DeviceMemorySettings(fraction=0.6, budget_bytes=10 * GIB, max_render_slots=2, render_wait_s=5.0)
    with pytest.raises(ValueError, match="SAM_GPU_MEMORY_FRACTION"):
        RuntimeSettings.from_env({"SAM_GPU_MEMORY_FRACTION": "0"})


def test_a_busy_render_slot_answers_overloaded_after_its_wait() -> None:
    slots = RenderSlots(1, wait_s=0.2)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with slots.held():
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)
    start = time.monotonic()
    with pytest.raises(DeviceMemoryExhausted, match="SAM_GPU_RENDER_SLOTS") as refused, slots.held():
        pass
    assert 0.15 < time.monotonic() - start < 5
    assert http_status(refused.value) == 503 and refused.value.code == "overloaded"
    release.set()
    thread.join(10)
    with slots.held():  # free again
        pass


def _entry(name: str, nbytes: int) -> CachedImage:
    return CachedImage(name, np.zeros(1, np.float32), nbytes, (1, 1), (1, 1), b"")


def test_releasing_the_oldest_half_keeps_pins_and_recent_entries() -> None:
    cache = EmbeddingCache(100)
    for name in "abcd":
        cache.get_or_compute(name, functools.partial(_entry, name, 20))
    cache.pin("a")
    cache.get("b")  # b is now the most recent; c is the least recent unpinned
    assert cache.release_oldest(0.5) == 40
    assert [name for name in "abcd" if _known(cache, name)] == ["a", "b"]  # a pinned, b recent


def _known(cache: EmbeddingCache, name: str) -> bool:
    try:
        cache.get(name)
    except Exception:  # noqa: BLE001 - UnknownImageId
        return False
    return True


@pytest.fixture(scope="module")
def capped_arena() -> ort.SessionOptions:
    """Session options whose sessions allocate from one BFC arena of ``ARENA_CAP_BYTES``."""
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(ARENA_CAP_BYTES, -1, -1, -1))
    options = ort.SessionOptions()
    options.add_session_config_entry("session.use_env_allocators", "1")
    return options


def _jpeg(width: int, height: int) -> bytes:
    """A smooth gradient with a bright square: small files, a mask to find at (60, 50)."""
    ramp = np.linspace(0, 160, width, dtype=np.float32)[None, :, None]
    pixels = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8).copy()
    pixels[30:80, 40:90] = 250
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def _request(data: bytes) -> ExtractRequest:
    return ExtractRequest(clicks=(Click(60.0, 50.0),), image_bytes=data, options=ExtractOptions(), need_pixels=False)


def test_out_of_memory_in_a_render_is_overloaded_frees_the_cache_and_the_next_request_runs(
        tiny_model_dir: Path, capped_arena: ort.SessionOptions) -> None:
    settings = RuntimeSettings.from_env({"SAM_PROVIDERS": "cpu", "SAM_CPU_PREPOST": "graph"})
    reference = HoldExtractor.from_model_dir(tiny_model_dir, settings)
    extractor = HoldExtractor.from_model_dir(tiny_model_dir, settings)
    session = ort.InferenceSession(str(tiny_model_dir / "postprocess.onnx"), capped_arena,
                                   providers=["CPUExecutionProvider"])
    extractor.engine.renderer = OrtMaskRenderer(session, "cpu")
    small = _jpeg(160, 120)
    for width in (200, 240, 280, 320):  # four cached embeddings
        extractor.extract(_request(_jpeg(width, width * 3 // 4)))
    held = extractor.cache.stats().bytes_held

    big = _jpeg(6000, 4000)  # 24 MP: about 300 MB of render intermediates
    with pytest.raises(DeviceMemoryExhausted) as refused:
        extractor.extract(_request(big))
    assert http_status(refused.value) == 503 and refused.value.code == "overloaded"
    assert refused.value.__cause__ is not None and is_out_of_memory(refused.value.__cause__)
    stats = extractor.cache.stats()
    held_with_big = held + len(big) + int(np.prod(extractor.engine.embedding_shape)) * 4  # 24 MP: its file, no pixels
    assert stats.bytes_held <= held_with_big // 2 and stats.evictions >= 2 and stats.entries >= 1

    answer = extractor.extract(_request(small))
    expected = reference.extract(_request(small))
    assert np.array_equal(answer.mask, expected.mask) and answer.mask.any()


def test_the_real_cuda_runtime_reports_its_error_codes() -> None:
    cuda = CudaRuntime.load(0)
    if cuda is None:
        pytest.skip("no libcudart on this machine")
    try:
        free, total = cuda.memory_bytes()
    except CudaError as exc:  # no GPU or driver: the code is reported, never ignored
        assert "cudaSetDevice on CUDA device 0 failed with cudaError" in str(exc)
        with pytest.raises(CudaError):
            cuda.synchronize(1)
    else:
        assert 0 < free <= total
