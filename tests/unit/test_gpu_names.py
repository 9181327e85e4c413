"""Checks of the GPU path that need no GPU: the names it uses exist in the pinned wheels,
and the provider plan keeps the pre/post graphs on CUDA whenever a GPU provider is asked for."""
from __future__ import annotations

import pytest

from runtime.gpu_jpeg import decode_params
from runtime.ort_runner import prepost_providers


def test_nvimgcodec_decode_params_build_with_the_pinned_wheel() -> None:
    nvimgcodec = pytest.importorskip("nvidia.nvimgcodec")
    params = decode_params(nvimgcodec)
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
