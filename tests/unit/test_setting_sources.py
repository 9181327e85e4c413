"""One source per default: the settings dataclasses declare each default, variable, bound and meaning
once, and ``from_env``, the limits table and the README's configuration table read those declarations."""

from __future__ import annotations

import ast
import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.env_values import DeclaredSetting, env_vars
from runtime.settings import OLD_CPU_PRECISION_VAR, RuntimeSettings
from serving.config import ServerSettings
from serving.limits import limits
from serving.settings_table import README_END, README_START, markdown_table, server_settings

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

#: A value other than the default for the settings whose type alone does not give one: (raw, parsed).
OTHER_VALUES: dict[str, tuple[str, Any]] = {
    "SM_MODEL_DIR": ("/models/x", Path("/models/x")),
    "SAM_HOST": ("127.0.0.1", "127.0.0.1"),
    "SAM_LOG_FORMAT": ("TEXT", "text"),
    "SAM_VARIANT_NAME": ("blue-1", "blue-1"),
    "SAM_PRECISION": ("fp16", "fp16"),
    "SAM_CPU_ENGINE": ("openvino", "openvino"),
    "SAM_CPU_PREPOST": ("graph", "graph"),
    "SAM_CPU_PRECISION": ("f32", "f32"),
    "SAM_CACHE_BYTES": ("3GiB", 3 << 30),
    "SAM_MAX_BODY_BYTES": ("7MiB", 7 << 20),
    "SAM_MAX_ZIP_MEMBER_BYTES": ("1MiB", 1 << 20),
    "SAM_PROVIDERS": ("cuda,cpu", ("cuda", "cpu")),
    "SAM_CUDA_MEM_LIMIT": ("1GiB", 1 << 30),
    "SAM_GPU_MEMORY_FRACTION": ("0.5", 0.5),
    "SAM_GPU_MEMORY_BYTES": ("1GiB", 1 << 30),
    "SAM_TRT_OPT_LEVEL": ("4", 4),
    "SAM_SHARED_CACHE_PASSWORD_FILE": ("/run/secrets/p", Path("/run/secrets/p")),
}
#: Variables that also move another field's default: path -> the value it then takes.
ALSO_SETS: dict[str, dict[tuple[str, ...], Any]] = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": {("max_body_bytes",): 3 << 20}}
#: The shared tier's settings apply once its URL is set (tests/unit/test_shared_settings.py covers the URL).
SHARED_TIER = {"SAM_SHARED_CACHE_URL": "redis://cache.example:6379"}


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


def leaves(settings: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every non-dataclass value of a settings tree by its field path."""
    if not is_dataclass(settings):
        return {path: settings}
    found: dict[tuple[str, ...], Any] = {}
    for f in fields(settings):
        found |= leaves(getattr(settings, f.name), (*path, f.name))
    return found


def test_unset_environment_gives_the_dataclass_defaults() -> None:
    """The server runs on ``from_env``; the README's tables and /docs on ``ServerSettings()``: one answer."""
    assert ServerSettings.from_env({}) == ServerSettings()
    assert RuntimeSettings.from_env({}) == RuntimeSettings()


def test_blank_variables_are_unset() -> None:
    blank = {setting.var.name: " " for setting in server_settings()}
    assert ServerSettings.from_env(blank) == ServerSettings()


@pytest.mark.parametrize("setting", server_settings(), ids=lambda s: s.var.name)
def test_each_variable_sets_its_own_field_only(setting: DeclaredSetting) -> None:
    """Every declared variable, nested option dataclasses included, changes its own field and no other."""
    if setting.var.name in SHARED_TIER:
        return
    base = SHARED_TIER if setting.path[:2] == ("runtime", "shared_cache") else {}
    before = leaves(ServerSettings.from_env(base))
    raw, parsed = other_value(setting.var.name, before[setting.path])
    after = leaves(ServerSettings.from_env({**base, setting.var.name: raw}))
    changed = {path: value for path, value in after.items() if before[path] != value}
    assert changed == {setting.path: parsed, **ALSO_SETS.get(setting.var.name, {})}


def test_readme_configuration_table_is_the_generated_one() -> None:
    text = README.read_text()
    block = text[text.index(README_START) + len(README_START):text.index(README_END)].strip()
    assert block == markdown_table(server_settings()), "run: python -m serving.settings_table, paste into README.md"


def test_each_variable_is_declared_once_with_its_meaning() -> None:
    names = [setting.var.name for setting in server_settings()]
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)
    assert [s.var.name for s in server_settings() if not s.var.doc.strip()] == []


#: The served product: what runs in the container.
PRODUCT = ("runtime", "serving", "inference.py")
#: Variables the product names without declaring them, and why.
UNDECLARED = {OLD_CPU_PRECISION_VAR: "SAM_CPU_PRECISION's old name, in that variable's row"}
_VARIABLE = re.compile(r"(SAM|SM|SAGEMAKER)_[A-Z0-9_]+")


def _named_variables(tree: ast.AST) -> set[str]:
    """Variables a module names: every string that is a whole SAM_/SM_/SAGEMAKER_ name, and the
    literal first argument of any ``environ.get`` / ``getenv`` call or ``environ[...]`` read."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _VARIABLE.fullmatch(node.value):
            found.add(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and (node.func.attr == "getenv" or (node.func.attr == "get" and "environ" in ast.unparse(node.func))):
            found.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and "environ" in ast.unparse(node.value) \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            found.add(node.slice.value)
    return found


def product_variables() -> dict[str, set[str]]:
    """Variable -> the product files that name it."""
    named: dict[str, set[str]] = {}
    for entry in PRODUCT:
        path = REPO / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for name in _named_variables(ast.parse(file.read_text())):
                named.setdefault(name, set()).add(file.relative_to(REPO).as_posix())
    return named


def test_every_variable_the_product_reads_is_in_the_table() -> None:
    declared = {setting.var.name for setting in server_settings()}
    undeclared = {name: files for name, files in product_variables().items()
                  if name not in declared and name not in UNDECLARED}
    assert undeclared == {}, "declare these with env_field (their row in the README is generated from it)"


def test_the_product_scan_finds_reads() -> None:
    tree = ast.parse('import os\nos.environ.get("CI")\nos.getenv("HOME")\nos.environ["AWS_REGION"]\nx = "SAM_X"')
    assert _named_variables(tree) == {"CI", "HOME", "AWS_REGION", "SAM_X"}
    assert "SAM_MAX_CLICKS" in product_variables()


def test_the_limits_table_names_the_declared_variables() -> None:
    declared = {setting.var.name for setting in server_settings()}
    for row in limits(ServerSettings()):
        for name in filter(None, (part.strip() for part in row.setting.split("+"))):
            assert name in declared, row


def test_settings_without_a_variable_are_few_and_known() -> None:
    unset = {f.name for f in fields(ServerSettings)} - set(env_vars(ServerSettings))
    assert unset == {"runtime"}  # nested: its variables are RuntimeSettings' (and its option dataclasses')


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
