"""SAM_CPU_PRECISION: the setting, the parity gate, and the tier ``auto`` picks (a pure decision)."""

from __future__ import annotations

import pytest

from runtime.cpu_precision import CpuSupport, choose_cpu_precision, passes_gate, unsupported_reason
from runtime.settings import RuntimeSettings

EVERYTHING = CpuSupport(bf16_cpu=True, openvino_encoder=True, int8_encoder=True)
GOOD = {"mask_iou_mean": 0.99, "mask_iou_worst": 0.96, "passes_gate": True}
POOR_MEAN = {"mask_iou_mean": 0.979, "mask_iou_worst": 0.99}
POOR_WORST = {"mask_iou_mean": 0.999, "mask_iou_worst": 0.949}


def test_gate_is_mean_098_and_worst_095() -> None:
    assert passes_gate({"mask_iou_mean": 0.98, "mask_iou_worst": 0.95})
    assert not passes_gate(POOR_MEAN) and not passes_gate(POOR_WORST)
    # a stored verdict is not trusted: the numbers decide
    assert not passes_gate({**POOR_WORST, "passes_gate": True})
    assert not passes_gate(None) and not passes_gate({}) and not passes_gate({"error": "not measured"})
    assert not passes_gate({"mask_iou_mean": "NaN?", "mask_iou_worst": 1.0})


@pytest.mark.parametrize("tiers,support,expected", [
    ({"bf16": GOOD, "int8": GOOD}, EVERYTHING, "int8"),  # the fastest tier that passes
    ({"bf16": GOOD, "int8": POOR_MEAN}, EVERYTHING, "bf16"),
    ({"bf16": POOR_MEAN, "int8": GOOD}, EVERYTHING, "int8"),
    ({"bf16": GOOD, "int8": GOOD}, CpuSupport(False, True, True), "int8"),  # no bf16 arithmetic
    ({"bf16": GOOD, "int8": GOOD}, CpuSupport(True, False, True), "f32"),  # encoder on ONNX Runtime: int8 is slower there
    ({"bf16": GOOD, "int8": GOOD}, CpuSupport(False, True, False), "f32"),  # no int8 files either
    ({"bf16": POOR_WORST, "int8": POOR_MEAN}, EVERYTHING, "f32"),
    ({}, EVERYTHING, "f32"),  # an export before tiers were recorded
])
def test_auto_picks_the_fastest_tier_that_runs_and_passes(tiers, support, expected) -> None:  # type: ignore[no-untyped-def]
    assert choose_cpu_precision("auto", support, tiers, random_weights=False) == expected


def test_random_weights_never_enable_a_tier() -> None:
    assert choose_cpu_precision("auto", EVERYTHING, {"bf16": GOOD, "int8": GOOD}, random_weights=True) == "f32"
    # ...but a tier asked for by name runs (the numbers are only recorded)
    assert choose_cpu_precision("int8", EVERYTHING, {"int8": POOR_MEAN}, random_weights=True) == "int8"


@pytest.mark.parametrize("setting,support,reason", [
    ("bf16", CpuSupport(False, True, True), "no bfloat16 arithmetic .AVX512-BF16 or AMX"),
    ("bf16", CpuSupport(True, False, True), "bf16 runs on OpenVINO: set SAM_CPU_ENGINE=auto or openvino"),
    ("int8", CpuSupport(True, True, False), "no int8 graphs: export it with export_sam.py --int8"),
])
def test_a_tier_that_cannot_run_is_an_error_naming_why(setting, support, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=f"SAM_CPU_PRECISION={setting} cannot run: .*{reason}"):
        choose_cpu_precision(setting, support, {"bf16": GOOD, "int8": GOOD}, random_weights=False)
    assert unsupported_reason("f32", CpuSupport(False, False, False)) is None


def test_a_named_tier_runs_whatever_its_parity() -> None:
    assert choose_cpu_precision("bf16", EVERYTHING, {"bf16": POOR_WORST}, random_weights=False) == "bf16"
    assert choose_cpu_precision("f32", EVERYTHING, {"bf16": GOOD}, random_weights=False) == "f32"


@pytest.mark.parametrize("environ,expected", [
    ({}, "auto"),
    ({"SAM_CPU_PRECISION": " INT8 "}, "int8"),
    ({"SAM_OPENVINO_PRECISION": "bf16"}, "bf16"),  # the old name still works
    ({"SAM_CPU_PRECISION": "bf16", "SAM_OPENVINO_PRECISION": "bf16"}, "bf16"),
])
def test_setting_and_its_old_name(environ: dict[str, str], expected: str) -> None:
    assert RuntimeSettings.from_env(environ).cpu_precision == expected


def test_bad_or_conflicting_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="SAM_CPU_PRECISION='fp8' is invalid"):
        RuntimeSettings.from_env({"SAM_CPU_PRECISION": "fp8"})
    with pytest.raises(ValueError, match="SAM_CPU_PRECISION=int8 and its old name SAM_OPENVINO_PRECISION=bf16 disagree"):
        RuntimeSettings.from_env({"SAM_CPU_PRECISION": "int8", "SAM_OPENVINO_PRECISION": "bf16"})
