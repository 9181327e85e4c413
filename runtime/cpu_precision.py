"""The CPU tier's precision: ``SAM_CPU_PRECISION=auto|f32|bf16|int8``, and which one runs.

Tiers (each a choice of graph files and of OpenVINO's inference precision):

- ``f32``: the fp32 graphs (``encoder.onnx``, ``decoder.onnx``); parity with PyTorch.
- ``bf16``: the same files, compiled by OpenVINO with bfloat16 inference precision. Needs a
  CPU with AVX512-BF16 or AMX (OpenVINO reports the ``BF16`` capability) and the encoder on
  OpenVINO; a decoder on ONNX Runtime (``SAM_CPU_ENGINE=onnxruntime`` cannot run bf16;
  ``auto`` puts it on OpenVINO) would stay fp32.
- ``int8``: the graphs ``export_sam.py --int8`` quantised with NNCF post-training
  quantisation (``encoder_int8.onnx``, ``decoder_int8.onnx``). Runs on either engine (VNNI on
  AVX512-VNNI CPUs); on OpenVINO the layers NNCF left in float run in bf16 where the CPU has
  it (``runtime.openvino_runner.inference_precision``), elsewhere in f32.

``auto`` takes the fastest tier this CPU can run whose parity, recorded in the manifest by
the export, passes ``PARITY_GATE``; ``f32`` otherwise. Speed order (``AUTO_ORDER``) is
measured on a 2-core Zen 4 (vit_t on OpenVINO, quiet machine, interleaved medians): encoder
int8 267 ms (301 ms with its float layers in f32, as on a CPU without bf16), bf16 347 ms, f32
640 ms; decoder (one prompt) int8 20-24 ms, bf16 22-24 ms, f32 on ONNX Runtime 52-57 ms.
On ONNX Runtime alone (no openvino) the int8 encoder is slower than the f32 one (788-1264 ms
against 654-695 ms), so ``auto`` considers int8 only with the encoder on OpenVINO. A
random-weight export records numbers but never enables a tier. A tier asked for by name that
cannot run here is a ``ValueError`` naming the reason (a start-up error).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from runtime.env_values import choice
from runtime.manifest import Manifest

CpuPrecisionSetting = Literal["auto", "f32", "bf16", "int8"]
CpuPrecision = Literal["f32", "bf16", "int8"]

parse_cpu_precision: Callable[[str], CpuPrecisionSetting] = choice("auto", "f32", "bf16", "int8")

#: ``auto``'s preference, fastest first (see the module docstring).
AUTO_ORDER: tuple[CpuPrecision, ...] = ("int8", "bf16", "f32")
#: The gate a lower-precision tier's recorded parity must pass for ``auto`` to run it: per-click
#: mask IoU against PyTorch's SamPredictor, mean over every parity mask and worst single one.
PARITY_GATE = {"mask_iou_mean": 0.98, "mask_iou_worst": 0.95}
#: The manifest's ``parity`` key holding each tier's record ({"f32": {...}, "bf16": {...}, ...}).
TIERS_KEY = "cpu_tiers"
#: Manifest roles of the int8 graphs, per graph.
INT8_ROLES = {"encoder": "encoder_int8", "decoder": "decoder_int8"}


@dataclass(frozen=True)
class CpuSupport:
    """What this host and model directory allow.

    ``bf16_cpu``: the CPU has bfloat16 arithmetic (AVX512-BF16 or AMX); ``openvino_encoder``:
    the encoder runs on OpenVINO (bf16 needs it); ``int8_encoder``: the manifest lists an
    int8 encoder.
    """

    bf16_cpu: bool
    openvino_encoder: bool
    int8_encoder: bool


def passes_gate(record: Mapping[str, Any] | None) -> bool:
    """Whether one tier's recorded parity (``mask_iou_mean``, ``mask_iou_worst``) passes ``PARITY_GATE``."""
    if not record or "error" in record:
        return False
    try:
        return all(float(record[key]) >= limit for key, limit in PARITY_GATE.items())
    except (KeyError, TypeError, ValueError):
        return False


def unsupported_reason(tier: CpuPrecision, support: CpuSupport) -> str | None:
    """Why ``tier`` cannot run here, or None when it can."""
    if tier == "bf16" and not support.openvino_encoder:
        return "bf16 runs on OpenVINO: set SAM_CPU_ENGINE=auto or openvino (with the openvino package installed)"
    if tier == "bf16" and not support.bf16_cpu:
        return "this CPU has no bfloat16 arithmetic (AVX512-BF16 or AMX; OpenVINO reports no BF16 capability)"
    if tier == "int8" and not support.int8_encoder:
        return "the model directory has no int8 graphs: export it with export_sam.py --int8"
    return None


def choose_cpu_precision(setting: CpuPrecisionSetting, support: CpuSupport, tiers: Mapping[str, Any],
                         random_weights: bool) -> CpuPrecision:
    """The tier that runs: ``setting`` itself (``ValueError`` naming why it cannot run), or for
    ``auto`` the first of ``AUTO_ORDER`` that runs here and whose record in ``tiers`` (the
    manifest's ``parity[TIERS_KEY]``) passes the gate; always f32 for random weights."""
    if setting != "auto":
        reason = unsupported_reason(setting, support)
        if reason is not None:
            raise ValueError(f"SAM_CPU_PRECISION={setting} cannot run: {reason}")
        return setting
    if random_weights:
        return "f32"
    for tier in AUTO_ORDER[:-1]:
        faster = tier != "int8" or support.openvino_encoder  # see the module docstring
        if faster and unsupported_reason(tier, support) is None and passes_gate(tiers.get(tier)):
            return tier
    return "f32"


def tier_role(manifest: Manifest, role: str, tier: CpuPrecision) -> str:
    """The manifest role whose file ``role`` (encoder/decoder) runs in ``tier``: the int8 graph
    for ``int8`` when exported (an export may quantise the encoder only), else ``role``."""
    int8 = INT8_ROLES.get(role)
    return int8 if tier == "int8" and int8 is not None and int8 in manifest.models else role


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin reports the ``BF16`` capability (False without openvino)."""
    if importlib.util.find_spec("openvino") is None:
        return False
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
