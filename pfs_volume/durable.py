"""Small files that must survive a crash: written whole and flushed, with their folder.

The crash markers of puts (``putlog``) and merges (``history.journal``) are such files:
start-up reads them to undo what a killed daemon left half done, so each must be on disk
before the work it describes begins.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_synced(path: Path, body: dict[str, Any]) -> None:
    """Create ``path`` (it must not exist; 0600) holding ``body`` as JSON, flushed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(body).encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_synced(path: Path, data: bytes) -> None:
    """Make ``path`` (0600) hold ``data``, whole or not at all after a crash: written to a
    staged name, flushed, renamed over ``path``, the folder flushed."""
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(staged, path)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a file created, renamed or removed in it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
