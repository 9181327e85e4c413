"""Parity of each CPU precision tier (``runtime.cpu_precision``) against PyTorch, for the manifest.

Every tier runs through the serving engine as ``SAM_CPU_ENGINE=auto`` runs it
(``runtime.cpu_backends.AUTO_CPU_BACKENDS``: the backend per tier and graph, each with the
tier's file and inference precision; ONNX Runtime when openvino is not installed); the parity cases are
``export.parity``'s (per-click masks on the synthetic wall). The record per tier is the
parity report plus ``passes_gate`` (``runtime.cpu_precision.PARITY_GATE``) and
``enforced``: False for random weights, whose numbers are recorded but never enable a tier.
A tier that cannot run here (bf16 on a CPU without it) is recorded with its ``error``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from export.parity import check_parity
from runtime.cpu_backends import choose_cpu_backends, openvino_available
from runtime.cpu_precision import (
    AUTO_ORDER,
    CpuPrecision,
    CpuSupport,
    openvino_has_bf16,
    passes_gate,
    unsupported_reason,
)
from runtime.engine import SamEngine
from runtime.graph_loading import GraphOpener
from runtime.manifest import Manifest
from runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)


def open_tier_engine(manifest: Manifest, model_dir: Path, tier: CpuPrecision) -> SamEngine:
    """The CPU serving engine of ``tier`` over ``model_dir`` as ``SAM_CPU_ENGINE=auto`` opens it
    (``manifest`` need not be written yet)."""
    settings = RuntimeSettings()
    backends = choose_cpu_backends("auto", openvino_available(), tier)
    graphs = GraphOpener(model_dir, manifest, settings, tier)
    return SamEngine(manifest, graphs.encoder(backends["encoder"], ("cpu",)),
                     graphs.decoder(backends["decoder"], ("cpu",), None),
                     prompts_per_run=settings.cpu_decoder_prompts_per_run, precision=tier)


def tier_parity(sam: Sam, manifest: Manifest, model_dir: Path, predictor: SamPredictor,
                size_hw: tuple[int, int]) -> dict[str, Any]:
    """{tier: record} for every tier this host and export can run (see the module docstring)."""
    enforced = manifest.weights.get("origin") != "random"
    support = CpuSupport(bf16_cpu=openvino_has_bf16(), openvino_encoder=openvino_available(),
                         int8_encoder="encoder_int8" in manifest.models)
    records: dict[str, Any] = {}
    for tier in reversed(AUTO_ORDER):
        reason = unsupported_reason(tier, support)
        if reason is not None:
            records[tier] = {"error": f"not measured: {reason}", "passes_gate": False, "enforced": enforced}
            continue
        log.info("checking the %s tier's parity with PyTorch", tier)
        report = check_parity(sam, open_tier_engine(manifest, model_dir, tier), tier, size_hw, enforce=False,
                              predictor=predictor).to_json()
        records[tier] = {**report, "passes_gate": passes_gate(report), "enforced": enforced}
    return records
