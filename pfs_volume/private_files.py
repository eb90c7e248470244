"""Files and folders only root may read: the state dir, the pool image, the metadata.

Containers write into the pool as root, and its metadata names every repo, so none of it
is for other users of the host (DESIGN.md, "On disk"). One place sets those modes, never
through a symbolic link.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pfs_volume.errors import StorageError

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private(path: Path, mode: int) -> None:
    """Give ``path`` exactly ``mode`` (``PRIVATE_DIR`` or ``PRIVATE_FILE``), saying so
    when it was wider.

    Raises:
        StorageError: when ``path`` is a symbolic link, or its mode cannot be set.
    """
    try:
        info = os.lstat(path)
        if os.path.islink(path):
            raise StorageError(f"{path} is a symbolic link; pfs keeps its state in a real folder")
        if info.st_mode & 0o7777 != mode:
            os.chmod(path, mode, follow_symlinks=False)
            log.info("%s made private: mode %o (was %o)", path, mode, info.st_mode & 0o7777)
    except OSError as exc:
        raise StorageError(f"cannot make {path} private (mode {mode:o}): {exc}") from exc


def create_private_file(path: Path, *, truncate: bool = False) -> int:
    """Open ``path`` for writing, made with ``PRIVATE_FILE`` if missing and given it if
    not, never through a symbolic link; the caller closes the descriptor.

    Raises:
        OSError: when it cannot be opened (a symbolic link: ELOOP).
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags | (os.O_TRUNC if truncate else 0), PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd
