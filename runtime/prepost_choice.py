"""Which implementation runs pre-processing and mask rendering: numpy/Pillow or the ONNX graphs.

On a GPU provider both run as ONNX graphs on the CUDA EP (the image, the embedding, the
logits and the masks stay on the device). On CPU, ``SAM_CPU_PREPOST`` chooses: ``numpy``
(Pillow and numpy for both stages), ``graph`` (the exported graphs on the CPU EP), or
``auto``, the faster per stage as measured side by side by ``benchmarks/bench_prepost.py``
(``benchmarks/PREPOST.md``): Pillow/numpy for both on CPU. Both pass the same parity tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from runtime.env_values import choice

Stage = Literal["preprocess", "postprocess"]
Implementation = Literal["numpy", "graph"]
PrePostSetting = Literal["auto", "numpy", "graph"]

STAGES: tuple[Stage, ...] = ("preprocess", "postprocess")
#: ``auto``'s choice per stage on CPU (see ``benchmarks/PREPOST.md`` for the measurements).
AUTO_CPU_PREPOST: dict[Stage, Implementation] = {"preprocess": "numpy", "postprocess": "numpy"}


parse_prepost: Callable[[str], PrePostSetting] = choice(*get_args(PrePostSetting))


def choose_prepost(setting: PrePostSetting, on_gpu: bool, graphs_exported: bool) -> dict[Stage, Implementation]:
    """The implementation per stage.

    On a GPU: the graphs when the export has them (else numpy, and the request leaves the
    device). On CPU: ``setting``; ``graph`` without exported graphs raises ``ValueError``.
    """
    if on_gpu:
        choice: Implementation = "graph" if graphs_exported else "numpy"
        return {stage: choice for stage in STAGES}
    if setting == "graph":
        if not graphs_exported:
            raise ValueError("SAM_CPU_PREPOST=graph but the model directory has no preprocess/postprocess "
                             "graphs: export it again with export/export_sam.py")
        return {stage: "graph" for stage in STAGES}
    if setting == "numpy":
        return {stage: "numpy" for stage in STAGES}
    return dict(AUTO_CPU_PREPOST)
