"""Parsers for setting values: each error names the variable and the value it refused."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


WEIGHT_PATTERN = re.compile(r"[0-9]+([.][0-9]+)?")
VARIANT_NAME_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def text(environ: Mapping[str, str], name: str, default: str = "") -> str:
    """The variable's value; ``default`` when unset or empty (as bash's ``${NAME:=default}``)."""
    return environ.get(name) or default


def integer(name: str, raw: str, low: int, high: int | None = None) -> int:
    """``raw`` as an int in [low, high]."""
    if not re.fullmatch(r"-?[0-9]+", raw.strip()):
        raise SettingsError(f"{name} must be a whole number, not '{raw}'")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bounds = f"{low} to {high}" if high is not None else f"{low} or more"
        raise SettingsError(f"{name} must be {bounds}, not '{raw}'")
    return value


def number(name: str, raw: str, low: float, high: float | None = None, low_open: bool = False) -> float:
    """``raw`` as a finite float >= low (> low when ``low_open``) and <= high."""
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not '{raw}'") from None
    if not math.isfinite(value) or value < low or (low_open and value == low) \
            or (high is not None and value > high):
        above = f"above {low:g}" if low_open else f"at least {low:g}"
        raise SettingsError(f"{name} must be a number {above}{f' and at most {high:g}' if high is not None else ''}, "
                            f"not '{raw}'")
    return value


def weight(raw: str, message: str) -> float:
    """A traffic weight (a number >= 0, as SageMaker's relative weights); ``message`` on a bad one."""
    if not WEIGHT_PATTERN.fullmatch(raw):
        raise SettingsError(message)
    return float(raw)


def choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise SettingsError(f"{name} must be {' or '.join(choices)}, not '{raw}'")
    return raw


def id_list(name: str, raw: str, prefix: str) -> tuple[str, ...]:
    """A comma-separated list of AWS ids that start with ``prefix`` (``subnet-``, ``sg-``)."""
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    bad = [item for item in items if not re.fullmatch(rf"{re.escape(prefix)}[0-9a-f]{{8,17}}", item)]
    if bad or not items:
        raise SettingsError(f"{name} must be comma-separated {prefix}... ids, not '{raw}'")
    return items
