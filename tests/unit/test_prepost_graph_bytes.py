"""The pre/post-processing and cut-out graphs serialise byte for byte as they did before their
builders were split into named steps (SHA-256 of ``SerializeToString()``, measured on main 15f0510
with the pinned onnx). A refactoring that changes a node, its order, a name or an initializer fails
here; a deliberate change of a graph updates its digest (and re-runs the graphs' parity tests)."""

from __future__ import annotations

import hashlib

import onnx
import pytest

from export.prepost_graphs import build_cutout_resize, build_postprocess, build_preprocess

SAM_MEAN, SAM_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def _sha256(model: onnx.ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString()).hexdigest()


@pytest.mark.parametrize(("build", "digest_prefix"), [
    (lambda: build_preprocess(1024, SAM_MEAN, SAM_STD), "fb1f77dfe80ce979"),
    (lambda: build_postprocess(1024, 256, 4, 0.0), "3739c86b782c45bc"),
    (lambda: build_postprocess(1024, 256, 3, 0.5), "cd5c89643424c0c6"),
    (build_cutout_resize, "8f435f648b725396"),
], ids=["preprocess", "postprocess", "postprocess_3_tokens_threshold_0.5", "cutout_resize"])
def test_the_graphs_are_byte_identical_to_main(build, digest_prefix: str) -> None:  # type: ignore[no-untyped-def]
    assert _sha256(build()).startswith(digest_prefix)
