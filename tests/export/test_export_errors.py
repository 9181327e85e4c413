"""Bad export input answers in one line naming the problem, never a bare number or a graph dump."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tests.conftest import run_export


@pytest.mark.parametrize("content,expected", [
    (b"hello world\n" * 10, "it is not a PyTorch checkpoint (.pth) file"),
    (b"", "the file is empty or truncated"),
    (pickle.dumps(174812789), "only plain state dicts are loaded"),
], ids=["text", "empty", "pickle"])
def test_junk_checkpoint_says_what_is_wrong(tmp_path: Path, content: bytes, expected: str) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(content)
    result = run_export("--model-type", "tiny", "--checkpoint", str(junk), "--output", str(tmp_path / "out"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot read checkpoint {junk}: ") and expected in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("opset", ["5", "21"])
def test_unsupported_opset_is_refused_before_tracing(tmp_path: Path, opset: str) -> None:
    result = run_export("--model-type", "tiny", "--random-weights", "--opset", opset, "--output", str(tmp_path / "out"),
                        timeout=120)
    assert result.returncode == 2
    assert f"argument --opset: {opset} is not supported; use 12 to 20" in result.stderr
    assert "onnx::" not in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 6  # usage + one error line, not a graph
    assert not (tmp_path / "out").exists()
