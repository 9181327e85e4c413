"""TensorRT only when its libraries load: the dlopen check, the provider decision, no banner on stdout."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import onnxruntime as ort
import pytest

from runtime.engine import SamEngine
from runtime.errors import ProviderUnavailable
from runtime.gpu_libraries import TENSORRT_LIBRARIES, library_problem, unloadable_providers
from runtime.ort_runner import stdout_to_log
from runtime.providers import ProviderConfig, resolve_providers
from runtime.settings import RuntimeSettings

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
NO_TENSORRT = "libnvinfer.so.10 cannot be loaded (libnvinfer.so.10: cannot open shared object file)"


class RecordingLoader:
    """A dlopen stand-in that fails for the names given and records what was asked."""

    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        self.asked: list[str] = []

    def __call__(self, name: str) -> object:
        self.asked.append(name)
        if name in self.missing:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()


def test_the_real_loader_names_the_library_that_does_not_load() -> None:
    assert library_problem(("libm.so.6", "libc.so.6")) is None
    problem = library_problem(("libm.so.6", "libsam-holds-absent.so.10"))
    assert problem is not None and problem.startswith("libsam-holds-absent.so.10 cannot be loaded (")
    assert "cannot open shared object file" in problem


def test_tensorrt_is_probed_by_the_sonames_its_provider_links() -> None:
    assert TENSORRT_LIBRARIES == ("libnvinfer.so.10", "libnvonnxparser.so.10")
    loader = RecordingLoader({"libnvonnxparser.so.10"})
    problem = unloadable_providers(ProviderConfig(), GPU_BUILD, loader)
    assert loader.asked == ["libnvinfer.so.10", "libnvonnxparser.so.10"]
    assert problem == {"tensorrt": "libnvonnxparser.so.10 cannot be loaded "
                                   "(libnvonnxparser.so.10: cannot open shared object file: No such file or directory)"}
    assert unloadable_providers(ProviderConfig(), GPU_BUILD, RecordingLoader(set())) == {}


def test_tensorrt_is_not_probed_when_it_would_not_be_asked_for() -> None:
    loader = RecordingLoader(set(TENSORRT_LIBRARIES))
    assert unloadable_providers(ProviderConfig(requested=("cuda", "cpu")), GPU_BUILD, loader) == {}
    assert unloadable_providers(ProviderConfig(), ["CPUExecutionProvider"], loader) == {}
    assert loader.asked == []


def test_auto_leaves_tensorrt_out_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="runtime.providers")
    chosen = resolve_providers(ProviderConfig(), GPU_BUILD, {"tensorrt": NO_TENSORRT})
    assert chosen == ("cuda", "cpu")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"TensorrtExecutionProvider left out: {NO_TENSORRT}"]
    assert resolve_providers(ProviderConfig(require_gpu=True), GPU_BUILD, {"tensorrt": NO_TENSORRT}) == ("cuda",)


def test_tensorrt_alone_and_required_fails_with_the_library_reason() -> None:
    config = ProviderConfig(requested=("tensorrt",), require_gpu=True)
    with pytest.raises(ProviderUnavailable, match="TensorrtExecutionProvider: libnvinfer.so.10 cannot be loaded"):
        resolve_providers(config, GPU_BUILD, {"tensorrt": NO_TENSORRT})
    assert resolve_providers(config, GPU_BUILD, {}) == ("tensorrt",)


def test_printed_diagnostics_become_one_log_line(capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.ort_runner")
    with pytest.raises(RuntimeError), stdout_to_log("decoder session"):
        print("*************** EP Error ***************")
        print("EP Error libnvinfer.so.10: cannot open shared object file when using ['TensorrtExecutionProvider']")
        print("Falling back to ['CUDAExecutionProvider', 'CPUExecutionProvider'] and retrying.")
        raise RuntimeError("still logged")
    assert capsys.readouterr().out == ""
    expected = ("decoder session: ONNX Runtime printed: EP Error EP Error libnvinfer.so.10: cannot open shared object "
                "file when using ['TensorrtExecutionProvider'] Falling back to ['CUDAExecutionProvider', "
                "'CPUExecutionProvider'] and retrying.")
    assert [r.getMessage() for r in caplog.records] == [expected]
    with stdout_to_log("quiet"):
        pass
    assert len(caplog.records) == 1


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider names")
def test_engine_asks_for_tensorrt_only_when_it_loads(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A GPU build's provider list on this machine (no TensorRT, no GPU): the real dlopen check decides."""
    try:
        ctypes.CDLL(TENSORRT_LIBRARIES[0])
        pytest.skip("TensorRT loads on this machine")
    except OSError:
        pass
    monkeypatch.setattr(ort, "get_available_providers", lambda: GPU_BUILD)
    caplog.set_level(logging.INFO)
    engine = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine="onnxruntime"))
    assert engine.provider == "cpu"  # this ONNX Runtime build runs CUDA requests on CPU
    left_out = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(left_out) == 1 and left_out[0].startswith("TensorrtExecutionProvider left out: libnvinfer.so.10 cannot")
    assert capsys.readouterr().out == ""
