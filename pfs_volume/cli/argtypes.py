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


def api_address(text: str) -> str:
    """The type of ``--api`` (and ``PFS_API``): a unix socket path, or an http(s):// URL
    whose host and port a connection can be made to (a port out of range, a bracket
    left open or a host name that is no text made a traceback at the first call)."""
    if not text.startswith(("http://", "https://")):
        return text
    from urllib.parse import urlsplit  # here: an http:// API is the rare case

    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - checks the port: a ValueError when it is no port
        (url.hostname or "localhost").encode("idna")
    except ValueError as exc:  # UnicodeError included
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a URL the daemon can be reached at ({exc}); give a unix "
            "socket path or http://HOST[:PORT] (--api, or PFS_API)"
        ) from None
    return text


def existing_file(text: str) -> Path:
    """The type of a file to read: it must exist and not be a folder."""
    _named(text, "file")
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"there is no file {text!r}")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file")
    return _path(text)


def file_to_write(text: str) -> Path:
    """The type of a file to write: it may be missing, but not a folder."""
    _named(text, "file")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file")
    return _path(text)


def folder(text: str) -> Path:
    """The type of a folder: it may be missing, but not a file."""
    _named(text, "folder")
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder")
    return _path(text)


def _named(text: str, kind: str) -> None:
    """Refuse an empty name: ``Path("")`` is the current folder, so ``-o "$OUT"`` with
    OUT unset would write there (or fail with a traceback for a file)."""
    if not text:
        raise argparse.ArgumentTypeError(f"the name is empty; give a {kind}")


def _path(text: str) -> Path:
    """``Path(text)``; pathlib is imported here, by the verbs that take a path only."""
    from pathlib import Path

    return Path(text)
