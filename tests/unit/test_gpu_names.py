"""Checks of the GPU path that need no GPU: the names it uses exist in the pinned wheels,
and the provider plan keeps the pre/post graphs on CUDA whenever a GPU provider is asked for."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from runtime.cuda_runtime import CudaError, CudaRuntime
from runtime.gpu_jpeg_reader import GpuJpegReader, read_params
from runtime.ort_runner import OrtDecoder, prepost_providers, session_options
from runtime.providers import CudaOptions, ProviderConfig, provider_arguments
from runtime.settings import RuntimeSettings


def test_nvimgcodec_decode_params_build_with_the_pinned_wheel() -> None:
    nvimgcodec = pytest.importorskip("nvidia.nvimgcodec")
    params = read_params(nvimgcodec)
    assert isinstance(params, nvimgcodec.DecodeParams)
    assert params.color_spec == nvimgcodec.ColorSpec.SRGB
    assert params.apply_exif_orientation is True


@pytest.mark.parametrize(("requested", "planned"), [
    (("tensorrt", "cuda", "cpu"), ("cuda", "cpu")),
    (("tensorrt", "cpu"), ("cuda", "cpu")),
    (("tensorrt",), ("cuda",)),
    (("cuda", "cpu"), ("cuda", "cpu")),
    (("cpu",), ("cpu",)),
])
def test_prepost_graphs_run_on_cuda_whenever_a_gpu_provider_is_asked_for(
        requested: tuple, planned: tuple) -> None:
    assert prepost_providers(requested) == planned


def test_tensorrt_and_cuda_options_name_the_configured_device() -> None:
    config = ProviderConfig(cuda=CudaOptions(device_id=1))
    arguments = dict(provider_arguments(config, ("tensorrt", "cuda", "cpu"), "encoder"))
    assert arguments["TensorrtExecutionProvider"]["device_id"] == "1"
    assert arguments["CUDAExecutionProvider"]["device_id"] == "1"


def test_gpu_sessions_never_spin_cpu_threads() -> None:
    settings = RuntimeSettings()  # spinning on: the CPU decoder's default
    with pytest.raises(RuntimeError, match="allow_spinning"):  # not set: ONNX Runtime's default, spinning
        session_options(settings, "decoder").get_session_config_entry("session.intra_op.allow_spinning")
    for role in ("decoder", "preprocess", "postprocess"):
        options = session_options(settings, role, on_gpu=True)
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0", role
        assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0", role


def test_a_failed_stream_sync_falls_back_to_pillow() -> None:
    cuda = CudaRuntime.load(0)
    if cuda is None:
        pytest.skip("no libcudart on this machine")
    try:
        cuda.memory_bytes()
    except CudaError:
        decoder = GpuJpegReader(decoder=None, params=None, cuda=cuda)
        assert decoder._read_finished(1) is False  # the error code is not ignored
        assert decoder._read_finished(0) is True  # nothing to wait for
    else:
        pytest.skip("a working GPU: the sync succeeds")


def test_an_all_zero_mask_input_is_bound_from_a_kept_copy(tiny_model_dir: Path) -> None:
    session = ort.InferenceSession(str(tiny_model_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = OrtDecoder(session, "cpu")
    embedding = np.random.default_rng(0).normal(size=(1, 256, 64, 64)).astype(np.float32)
    feeds = {"point_coords": np.array([[[100.0, 120.0], [0.0, 0.0]]] * 2, np.float32),
             "point_labels": np.array([[1.0, -1.0]] * 2, np.float32),
             "mask_input": np.zeros((2, 1, 256, 256), np.float32), "has_mask_input": np.zeros(2, np.float32)}
    expected_logits, expected_scores = decoder.decode(embedding, feeds)  # plain run, no binding
    bound = ort.OrtValue.ortvalue_from_numpy(embedding)
    first = decoder.decode(bound, feeds)
    kept = decoder._zero_masks[(2, 1, 256, 256)]
    second = decoder.decode(bound, feeds)
    assert decoder._zero_masks[(2, 1, 256, 256)] is kept and len(decoder._zero_masks) == 1
    for logits, scores in (first, second):
        np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    masked = {**feeds, "mask_input": np.full((2, 1, 256, 256), 5.0, np.float32), "has_mask_input": np.ones(2, np.float32)}
    with_mask, _ = decoder.decode(bound, masked)  # a real mask input is uploaded, not replaced by zeros
    expected_with_mask, _ = decoder.decode(embedding, masked)
    assert len(decoder._zero_masks) == 1
    np.testing.assert_allclose(with_mask, expected_with_mask, rtol=1e-5, atol=1e-5)
