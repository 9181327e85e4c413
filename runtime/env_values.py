"""Parsers for configuration values read from the environment (one of each).

``read_env(environ, NAME, parse, default)`` applies a parser and names the variable when
the value is bad, so a misconfigured container fails at start-up with the variable's name.

``env_field(default, NAME, parse, doc=...)`` declares a settings dataclass field once: its
default (the dataclass's), its variable, its parser (which holds its bound) and its meaning.
``read_fields`` reads every such field of a class from the environment; ``env_name`` names a
field's variable for the README and OpenAPI tables; ``declared_settings`` walks a settings tree
(nested dataclasses included) for the README's configuration table
(``python -m serving.settings_table``). A new setting is one line in its dataclass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar, get_args, get_type_hints

T = TypeVar("T")
S = TypeVar("S", bound=str)

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*", re.IGNORECASE | re.ASCII)
_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "KI": 1024, "M": 10**6, "MB": 10**6,
          "MIB": 1 << 20, "MI": 1 << 20, "G": 10**9, "GB": 10**9, "GIB": 1 << 30, "GI": 1 << 30,
          "T": 10**12, "TB": 10**12, "TIB": 1 << 40, "TI": 1 << 40}


def read_env(environ: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    """``parse(environ[name])``, or ``default`` when unset or blank; a bad value names ``name``."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is invalid: {exc}") from exc


@dataclass(frozen=True)
class EnvVar:
    """How one settings field is read and documented: the variable's name, its parser (bounds
    included), what it means, and (``shown``) how the README writes a default that is not one
    value (one that depends on the device or the image), else None."""

    name: str
    parse: Callable[[str], Any]
    doc: str = ""
    shown: str | None = None


_ENV = "env"


def env_field(default: Any, name: str, parse: Callable[[str], Any], doc: str = "", shown: str | None = None) -> Any:
    """A dataclass field with ``default`` (``dataclasses.MISSING``: a required one), set by the environment
    variable ``name`` through ``parse``; ``doc`` and ``shown`` are its README row (see ``EnvVar``)."""
    return field(default=default, metadata={_ENV: EnvVar(name, parse, doc, shown)})


def env_vars(cls: type) -> dict[str, EnvVar]:
    """The ``env_field`` fields of dataclass ``cls``: field name -> its variable."""
    return {f.name: f.metadata[_ENV] for f in fields(cls) if _ENV in f.metadata}


def env_name(cls: type, field_name: str) -> str:
    """The environment variable that sets ``cls.field_name``."""
    return env_vars(cls)[field_name].name


def read_fields(cls: type, environ: Mapping[str, str], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every ``env_field`` of ``cls`` read from ``environ``: unset or blank gives the field's default
    (or ``defaults[name]``, for a default that depends on other variables)."""
    default_of = {f.name: f.default for f in fields(cls)} | dict(defaults or {})
    return {name: read_env(environ, var.name, var.parse, default_of[name]) for name, var in env_vars(cls).items()}


def read_field(cls: type, environ: Mapping[str, str], field_name: str) -> Any:
    """One ``env_field`` of ``cls`` read from ``environ`` (its default when unset or blank)."""
    var = env_vars(cls)[field_name]
    return read_env(environ, var.name, var.parse, {f.name: f.default for f in fields(cls)}[field_name])


@dataclass(frozen=True)
class DeclaredSetting:
    """One ``env_field`` found in a settings tree: the field's path from the root (``("runtime",
    "providers", "cuda", "device_id")``), the dataclass declaring it, its default and its variable."""

    path: tuple[str, ...]
    owner: type
    default: Any
    var: EnvVar


def declared_settings(cls: type, path: tuple[str, ...] = ()) -> list[DeclaredSetting]:
    """Every ``env_field`` of ``cls`` and of the settings dataclasses nested in it (a field whose
    type is a dataclass, or one or None), in declaration order, depth first."""
    hints = get_type_hints(cls)
    found: list[DeclaredSetting] = []
    for f in fields(cls):
        if _ENV in f.metadata:
            found.append(DeclaredSetting((*path, f.name), cls, f.default, f.metadata[_ENV]))
            continue
        nested = [t for t in (hints[f.name], *get_args(hints[f.name])) if isinstance(t, type) and is_dataclass(t)]
        if nested:
            found.extend(declared_settings(nested[0], (*path, f.name)))
    return found


def format_bytes(n: int) -> str:
    """Bytes as the tables write them: the largest binary unit that divides ``n`` (``6 MiB``), else bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"



def parse_bytes(text: str) -> int:
    """'2GiB', '512MB', '1048576' -> bytes."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a byte size (e.g. 512MiB, 2GiB, 1000000)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").upper()])


def parse_bool(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off (any case)."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false, 1/0, yes/no, on/off)")


def choice(*values: S) -> Callable[[str], S]:
    """A parser accepting exactly ``values`` (case and surrounding blanks ignored)."""
    def parse(text: str) -> S:
        lowered = text.strip().lower()
        for value in values:
            if lowered == value.lower():
                return value
        raise ValueError(f"expected {', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else f"expected {values[0]}")
    return parse


def positive(parse: Callable[[str], int]) -> Callable[[str], int]:
    """``parse``, refusing values <= 0."""
    def check(text: str) -> int:
        value = parse(text)
        if value <= 0:
            raise ValueError("must be positive")
        return value
    return check


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def parse_fraction(text: str) -> float:
    """A number within (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise ValueError("must be within (0, 1]")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError("must be a positive number")
    return value
