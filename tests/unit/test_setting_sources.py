"""One source per default: the settings dataclasses declare each default, variable and bound once,
and ``from_env``, the limits table and the README read those declarations."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from runtime.device_memory import DeviceMemorySettings
from runtime.env_values import env_vars
from runtime.settings import RuntimeSettings
from serving.config import ServerSettings
from serving.limits import _bytes, limits

README = Path(__file__).resolve().parents[2] / "README.md"

#: A value other than the default for the settings whose type alone does not give one: (raw, parsed).
OTHER_VALUES: dict[str, tuple[str, Any]] = {
    "SM_MODEL_DIR": ("/models/x", Path("/models/x")),
    "SAM_HOST": ("127.0.0.1", "127.0.0.1"),
    "SAM_LOG_FORMAT": ("TEXT", "text"),
    "SAM_VARIANT_NAME": ("blue-1", "blue-1"),
    "SAM_PRECISION": ("fp16", "fp16"),
    "SAM_CPU_ENGINE": ("openvino", "openvino"),
    "SAM_CPU_PREPOST": ("graph", "graph"),
    "SAM_CACHE_BYTES": ("3GiB", 3 << 30),
    "SAM_MAX_BODY_BYTES": ("7MiB", 7 << 20),
    "SAM_MAX_ZIP_MEMBER_BYTES": ("1MiB", 1 << 20),
}


def other_value(name: str, default: Any) -> tuple[str, Any]:
    """(raw, parsed) for ``name``: a valid value that differs from ``default``."""
    if name in OTHER_VALUES:
        return OTHER_VALUES[name]
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, int):
        return str(default + 3), default + 3
    if isinstance(default, float):
        return f"{default * 2}", default * 2
    return "other-name", "other-name"


def test_unset_environment_gives_the_dataclass_defaults() -> None:
    """The server runs on ``from_env``; the README's tables and /docs on ``ServerSettings()``: one answer."""
    assert ServerSettings.from_env({}) == ServerSettings()
    assert RuntimeSettings.from_env({}) == RuntimeSettings()


def test_blank_variables_are_unset() -> None:
    blank = {var.name: " " for var in env_vars(ServerSettings).values()}
    assert ServerSettings.from_env(blank) == ServerSettings()


@pytest.mark.parametrize(("owner", "field_name"), [(ServerSettings, name) for name in env_vars(ServerSettings)]
                         + [(RuntimeSettings, name) for name in env_vars(RuntimeSettings)])
def test_each_variable_sets_its_own_field_only(owner: type, field_name: str) -> None:
    defaults = ServerSettings()
    variable = env_vars(owner)[field_name].name
    if owner is ServerSettings:
        raw, parsed = other_value(variable, getattr(defaults, field_name))
        expected = replace(defaults, **{field_name: parsed})
    else:
        raw, parsed = other_value(variable, getattr(defaults.runtime, field_name))
        expected = replace(defaults, runtime=replace(defaults.runtime, **{field_name: parsed}))
    got = ServerSettings.from_env({variable: raw})
    assert got == expected


def readme_default(value: Any, field_name: str) -> str:
    """A default as the README's configuration table writes it."""
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    if isinstance(value, int) and field_name.endswith("_bytes"):
        return _bytes(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def readme_rows() -> list[list[str]]:
    """The configuration table's rows: [variables, defaults, meaning]."""
    return [[cell.strip() for cell in line.split("|")[1:-1]] for line in README.read_text().splitlines()
            if line.startswith("| `S")]


#: Defaults that depend on the device or the job (the README says how): not one value to compare.
DEVICE_DEPENDENT = {"SAM_CACHE_BYTES"}


@pytest.mark.parametrize(("owner", "field_name"), [(ServerSettings, name) for name in env_vars(ServerSettings)]
                         + [(RuntimeSettings, name) for name in env_vars(RuntimeSettings)])
def test_the_readme_states_each_declared_default(owner: type, field_name: str) -> None:
    """Each variable is in README.md's configuration table with the dataclass's default (its position
    in a row of several variables is its position among the row's defaults)."""
    variable = env_vars(owner)[field_name].name
    rows = [row for row in readme_rows() if f"`{variable}`" in row[0]]
    assert len(rows) == 1, f"add {variable} to README.md's configuration table"
    if variable in DEVICE_DEPENDENT:
        return
    names = re.findall(r"`([A-Z0-9_]+)`", rows[0][0])
    stated = rows[0][1].split(", ")[names.index(variable)].split(" (")[0].strip("`")
    default = getattr(ServerSettings() if owner is ServerSettings else RuntimeSettings(), field_name)
    assert stated == readme_default(default, field_name), f"README.md says {variable} defaults to {stated}"


def test_the_limits_table_names_the_declared_variables() -> None:
    declared = {var.name for owner in (ServerSettings, RuntimeSettings, DeviceMemorySettings) for var in env_vars(owner).values()}
    for row in limits(ServerSettings()):
        for name in filter(None, (part.strip() for part in row.setting.split("+"))):
            assert name in declared, row


def test_settings_without_a_variable_are_few_and_known() -> None:
    unset = {f.name for f in fields(ServerSettings)} - set(env_vars(ServerSettings))
    assert unset == {"batch_max_payload_bytes", "runtime"}  # derived from SAGEMAKER_MAX_PAYLOAD_IN_MB; nested


def test_openapi_options_are_the_literals_and_defaults_the_dataclasses() -> None:
    from typing import get_args

    from runtime.holds import ExtractOptions, PromptMode
    from runtime.outputs import MaskFormat, OutputOptions, ResultFormat
    from serving.openapi import openapi_schema

    request = openapi_schema()["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    outputs = request["properties"]["outputs"]["properties"]
    assert outputs["mask_format"]["enum"] == list(get_args(MaskFormat))
    assert outputs["result_format"]["enum"] == list(get_args(ResultFormat))
    assert request["properties"]["mode"]["enum"] == list(get_args(PromptMode))
    assert (outputs["result_format"]["default"], outputs["mask_format"]["default"], outputs["png_level"]["default"]) == (
        OutputOptions().result_format, OutputOptions().mask_format, OutputOptions().png_level)
    assert (request["properties"]["mode"]["default"], request["properties"]["min_area"]["default"]) == (
        ExtractOptions().mode, ExtractOptions().min_area)
