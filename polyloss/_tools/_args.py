"""Argument types shared by the command-line tools: each rejects a bad value before any work starts.

Each is an ``argparse`` ``type=`` callable raising :class:`argparse.ArgumentTypeError`
with a one-line reason, which argparse reports as ``argument --lr: must be ...``.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

__all__ = ["finite_float", "int_at_least", "output_file", "positive_float"]


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None


def finite_float(value: str) -> float:
    """A finite number (no nan, no inf)."""
    number = _float(value)
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value!r}")
    return number


def positive_float(value: str) -> float:
    """A finite number above 0."""
    number = _float(value)
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {value!r}")
    return number


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer ``>= low``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value!r}")
        return number

    parse.__name__ = f"int >= {low}"
    return parse


def output_file(value: str) -> str:
    """A file path that can be written: its folder exists and is writable, and it is not a folder itself."""
    if not value:
        raise argparse.ArgumentTypeError("must be a file name, got ''")
    folder = os.path.dirname(value) or "."
    if os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"{value!r} is a directory, not a file")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {value!r}: directory {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {value!r}: directory {folder!r} is not writable")
    return value
