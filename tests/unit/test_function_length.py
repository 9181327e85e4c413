"""No product function runs over ``MAX_FUNCTION_LINES`` lines (issue 25: split into named steps).

``STILL_LONG`` names the ones not split yet; it may only shrink: a listed function that is now
short fails the test too, so whoever splits one takes it off the list.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MAX_FUNCTION_LINES = 60

#: The product code: packages and top-level modules.
PRODUCT_PATHS = ("runtime", "serving", "export", "deploy", "rehearsal", "holds_client", "benchmarks",
                 "inference.py", "package_model.py")

#: (file, function) still over the limit: none left; the list stays so a new exception is named here.
STILL_LONG: frozenset[tuple[str, str]] = frozenset({
})


def _product_files() -> list[Path]:
    files: list[Path] = []
    for name in PRODUCT_PATHS:
        path = REPO / name
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def long_functions(max_lines: int = MAX_FUNCTION_LINES) -> dict[tuple[str, str], int]:
    """Every product function (methods and nested ones included) over ``max_lines``: (file, name) -> lines."""
    found: dict[tuple[str, str], int] = {}
    for path in _product_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > max_lines:
                    found[(path.relative_to(REPO).as_posix(), node.name)] = lines
    return found


def test_no_new_function_is_over_the_limit() -> None:
    new = {key: lines for key, lines in long_functions().items() if key not in STILL_LONG}
    assert new == {}, f"split these into named steps of at most {MAX_FUNCTION_LINES} lines: {new}"


def test_the_still_long_list_only_names_functions_that_are_still_long() -> None:
    split = STILL_LONG - long_functions().keys()
    assert split == set(), f"these are short now: take them off STILL_LONG: {sorted(split)}"


def test_the_checker_finds_a_long_function() -> None:
    assert long_functions(max_lines=5), "the checker found no function over 5 lines: it reads nothing"
