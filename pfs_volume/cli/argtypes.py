"""Argument types for the parser: each turns a word into a value or says what is wrong
with it and what is accepted (argparse prints that after the argument's name, exit 2)."""

from __future__ import annotations

import argparse
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def integer(text: str) -> int:
    """The type of a whole number (the verb or the daemon checks its range)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def number(text: str) -> float:
    """The type of a number, fractions allowed (the daemon checks its range)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def whole_number(low: int) -> Callable[[str], int]:
    """The type of a whole number of at least ``low``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number; give one of at least {low}"
            ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is too small; give at least {low}")
        return value

    return convert


def seconds(text: str) -> float:
    """The type of a number of seconds: 0 or more, fractions allowed."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds; give one like 30 or 2.5"
        ) from None
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text} is not 0 or more seconds")
    return value


def one_of(*names: str) -> Callable[[str], str]:
    """The type of one of ``names``."""

    def convert(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(names)}")
        return text

    return convert


def existing_file(text: str) -> Path:
    """The type of a file to read: it must exist and not be a folder."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"there is no file {text!r}")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file")
    return _path(text)


def file_to_write(text: str) -> Path:
    """The type of a file to write: it may be missing, but not a folder."""
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file")
    return _path(text)


def folder(text: str) -> Path:
    """The type of a folder: it may be missing, but not a file."""
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder")
    return _path(text)


def _path(text: str) -> Path:
    """``Path(text)``; pathlib is imported here, by the verbs that take a path only."""
    from pathlib import Path

    return Path(text)
