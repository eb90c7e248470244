"""Write one file into a tree (a branch's working copy) from a stream, all or nothing.

The bytes go into an unnamed file (``O_TMPFILE``) made in the tree, so an upload that
fails or is cut off leaves no name behind and never touches a user's file. Only when all
bytes are in is the file given a name: ``linkat`` straight to the target when nothing is
there (atomic, and it never replaces anything), else to a fresh random name in the same
folder that ``rename`` then moves over the target. The one window where a name exists
that the user did not ask for is between those two calls; the name is 128 random bits,
so it never collides with a user's file, and a crash there is undone at start-up (the
caller records the name first: ``pfs_volume.putlog``).

The stream is first compared with the file already there: while the bytes are equal
nothing is written, and when the whole stream equals the file nothing is written at all
(the tree does not change). At the first difference the equal prefix is copied from the
old file (``copy_file_range``, a reflink on btrfs) and the upload goes on from there. A
replaced file keeps its owner and permission bits; a new one is ``0644``.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from pfs_volume import safepath
from pfs_volume.errors import InvalidRequest, StorageError
from pfs_volume.failpoints import failpoint

CHUNK = 1024 * 1024
NEW_FILE_MODE = 0o644
TEMP_PREFIX = ".pfs-put-"


class UndoFailed(StorageError):
    """A failed write could not be undone: the tree may hold a stray name or folder."""


def write_file(
    root: Path,
    parts: Sequence[str],
    data: IO[bytes],
    before_naming: Callable[[str], None] = lambda _temp: None,
) -> bool:
    """Make ``parts`` (under ``root``) a regular file holding what ``data`` yields,
    making missing folders. Once all bytes are in, before anything gets a name,
    ``before_naming`` is told the temporary name the file will have in the target's
    folder if a target must be replaced. Returns False when the file held exactly that
    already (then nothing was written).

    On any error the tree's content is as it was (an unnamed file may have come and
    gone, which moves the subvolume's generation).

    Raises:
        safepath.BadPath: no name. safepath.LinkInPath, NotAFolder: a link or a
            non-folder where a folder is needed. InvalidRequest: the target is a
            folder. UndoFailed: an error whose partial work could not be undone.
    """
    if not parts:
        raise safepath.BadPath("a file path is needed, not the root")
    with safepath.closing(safepath.open_root(root)) as top:
        folder, missing = safepath.open_deepest(top, parts[:-1])
        with safepath.closing(folder):
            old = None if missing else _existing(folder, parts)
            try:
                written = _receive(folder, data, old)
            finally:
                if old is not None:
                    os.close(old[0])
            if written is None:
                return False
            with safepath.closing(written):
                temp = TEMP_PREFIX + secrets.token_hex(16)
                before_naming(temp)
                _place(folder, missing, parts[-1], written, old[1] if old else None, temp)
            return True


def _existing(folder: int, parts: Sequence[str]) -> tuple[int, os.stat_result] | None:
    """The target's current regular file, open; None when absent or not a regular file
    (a symlink or FIFO there is replaced, never opened).

    Raises:
        InvalidRequest: the target is a folder.
    """
    info = safepath.lstat_at(folder, parts[-1])
    if info is None:
        return None
    if stat.S_ISDIR(info.st_mode):
        raise InvalidRequest(f"{safepath.shown(parts)} is a folder; give a file path")
    if not stat.S_ISREG(info.st_mode):
        return None
    return safepath.open_regular(folder, parts[-1], parts), info


def _receive(folder: int, data: IO[bytes], old: tuple[int, os.stat_result] | None) -> int | None:
    """The stream in an unnamed file (open), or None when it equals ``old``'s bytes."""
    same = 0
    chunk = data.read(CHUNK)
    if old is not None:
        with os.fdopen(os.dup(old[0]), "rb") as current:
            while chunk and current.read(len(chunk)) == chunk:
                same += len(chunk)
                chunk = data.read(CHUNK)
            if not chunk and same == old[1].st_size:
                return None
    fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=folder)
    try:
        if same:
            _copy_prefix(old[0] if old else -1, fd, same)
        with os.fdopen(os.dup(fd), "wb") as out:
            while chunk:
                out.write(chunk)
                out.flush()
                failpoint("put.during_write")
                chunk = data.read(CHUNK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_prefix(source: int, target: int, size: int) -> None:
    """Copy the first ``size`` bytes of ``source`` to the start of ``target``."""
    done = 0
    while done < size:
        copied = os.copy_file_range(source, target, size - done, done, done)
        if copied == 0:
            raise StorageError("the file being replaced shrank while it was read")
        done += copied
    os.lseek(target, size, os.SEEK_SET)


def _place(
    folder: int,
    missing: Sequence[str],
    name: str,
    fd: int,
    old: os.stat_result | None,
    temp: str,
) -> None:
    """Give the unnamed file ``fd`` its name, making the ``missing`` folders first; an
    existing target is replaced through the temporary name ``temp``."""
    if old is not None:
        os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777 if old is not None else NEW_FILE_MODE)
    made: list[str] = []
    parent = os.dup(folder)
    try:
        for name_ in missing:
            os.mkdir(name_, 0o755, dir_fd=parent)
            made.append(name_)
            following = safepath.open_child_folder(parent, name_, made)
            os.close(parent)
            parent = following
        source = f"/proc/self/fd/{fd}"
        if safepath.lstat_at(parent, name) is None:
            os.link(source, name, dst_dir_fd=parent, follow_symlinks=True)
            return
        try:
            os.link(source, temp, dst_dir_fd=parent, follow_symlinks=True)
        except FileExistsError:  # 128 random bits: never, but never replace a file
            raise StorageError(f"a file named {temp} is in the way; try again") from None
        failpoint("put.before_rename")
        try:
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            _undo(lambda: os.unlink(temp, dir_fd=parent), f"remove {temp}")
            raise
    except BaseException:
        if made:
            _undo(lambda: _remove_made(folder, made), "remove the folders it made")
        raise
    finally:
        os.close(parent)


def _remove_made(folder: int, made: Sequence[str]) -> None:
    """Remove the (empty) folders ``made`` under ``folder``, deepest first."""
    for depth in range(len(made), 0, -1):
        with safepath.closing(safepath.open_folder(folder, made[: depth - 1])) as parent:
            os.rmdir(made[depth - 1], dir_fd=parent)


def _undo(step: Callable[[], None], what: str) -> None:
    """Run a step that undoes partial work; its failure is an UndoFailed."""
    try:
        step()
    except OSError as exc:
        raise UndoFailed(f"a failed write could not {what}: {exc}") from exc
