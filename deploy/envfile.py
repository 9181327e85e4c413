"""Read a ``.env`` file: ``NAME=value`` lines (``export`` allowed), ``#`` comments, values quoted
as in a shell (single, double, or bare words). No command substitution or expansion runs."""

from __future__ import annotations

import re
import shlex

from deploy.values import SettingsError

_ASSIGNMENT = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def parse_env(text: str, source: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGNMENT.fullmatch(stripped)
        if not match:
            raise SettingsError(f"{source}:{number}: not a NAME=value line: {stripped[:80]}")
        try:
            words = shlex.split(match.group(2), comments=True)
        except ValueError as exc:
            raise SettingsError(f"{source}:{number}: {match.group(1)}: {exc}") from None
        values[match.group(1)] = " ".join(words)
    return values


def read_env_file(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as env_file:
        return parse_env(env_file.read(), path)
