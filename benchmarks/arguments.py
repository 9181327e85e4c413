"""Command-line argument types shared by the benchmark scripts."""

from __future__ import annotations

import argparse


def size_wh(text: str) -> tuple[int, int]:
    """'3024x4032' -> (3024, 4032): an upright photo's width and height in pixels."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT (e.g. 3024x4032)") from exc
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be positive")
    return width, height
