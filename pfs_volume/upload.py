"""Write one file into a tree (a branch's working copy) from a stream, all or nothing,
touching the tree only once every byte is in.

The bytes are staged outside every working copy: in a file with a random name in the
pool's staging area (``<pool>/staging/``, root only), on the same btrfs file system; a
large one is flushed to disk once complete. An
upload that fails, is cut off or fills the pool removes its staged file and leaves the
tree untouched (not even its generation moves); a daemon killed while uploading leaves
the staged file behind, and the next start-up removes it (``StagingArea.clear``).

Once all bytes are in, the file is moved into the tree in one short step. A rename
across btrfs subvolumes fails (EXDEV), so the staged file's extents are cloned
(``FICLONE``, a reflink: metadata only, whatever the size) into an unnamed file
(``O_TMPFILE``) made in the target's folder, which is then given its name: ``linkat``
straight to the target when nothing is there (atomic, and it never replaces anything),
else to a fresh random name in the same folder that ``rename`` then moves over the
target. Folders missing on the way are made just before the name. A folder that refuses
to share extents (``chattr +C``) gets a copy of the bytes instead. The path is walked
again for this step, name by name without following links, so a folder swapped for a
link while the bytes came in is refused, never written through.

Before that step touches the tree, the caller is told exactly what it will do (a
``Placement``: the folders it will make, the name, the temporary name, the inode it
replaces), so that a crash in it can be judged from the tree alone
(``pfs_volume.putlog``, ``unplace``).

The stream is first compared with the file already there: while the bytes are equal
nothing is staged, and when the whole stream equals the file nothing is staged at all
(the tree does not change). At the first difference the equal prefix is copied from the
old file into the staged file (``copy_file_range``, a reflink on btrfs) and the upload
goes on from there. A replaced file keeps its owner and permission bits; a new one is
``0644``.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pfs_volume import errors, safepath
from pfs_volume.btrfs.ioctl import clone_file
from pfs_volume.errors import CloneRefused, InvalidRequest, PoolFull, StorageError, UndoFailed
from pfs_volume.failpoints import failpoint
from pfs_volume.private_files import PRIVATE_DIR, PRIVATE_FILE, make_private

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
NEW_FILE_MODE = 0o644
NEW_FOLDER_MODE = 0o755
TEMP_PREFIX = ".pfs-put-"
STAGED_PREFIX = "put-"
STAGING_FOLDER = "staging"
POOL_FULL = (errno.ENOSPC, errno.EDQUOT)
FLUSH_BEFORE_MOVE = 4 * CHUNK
"""A staged file this large is flushed before the move: a clone writes its source's
dirty pages out first, and that (0.7 s for 1 GiB, measured) belongs to the upload, not
to the step that touches the working copy. Smaller ones are not: the flush's fixed cost
(about 3 ms) would be most of a small put's."""


@dataclass(frozen=True)
class Placement:
    """What moving a staged file into a tree will do, told before it starts.

    Attributes:
        folder: the deepest folder of the target's path that exists (names from the
            tree's root).
        made: the folders to make under ``folder``, outermost first.
        name: the target's name, in ``folder`` + ``made``.
        temp: the temporary name in the target's folder that replacing goes through;
            None when nothing is at the target (the file is linked straight to it).
        replaced: the inode number of what is at the target now; None when nothing is.
    """

    folder: tuple[str, ...]
    made: tuple[str, ...]
    name: str
    temp: str | None
    replaced: int | None


class StagingArea:
    """The pool's folder for uploads in flight, outside every working copy.

    Args:
        folder: the folder (``<pool>/staging``); made, root only, by ``prepare``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def prepare(self) -> None:
        """Make the folder if missing and give it mode 0700.

        Raises:
            StorageError: it cannot be made, or is a symbolic link.
        """
        try:
            self.folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot make the staging folder {self.folder}: {exc}") from exc
        make_private(self.folder, PRIVATE_DIR)

    def clear(self) -> tuple[int, int]:
        """Remove everything in the folder (uploads a crash cut off); run at start-up,
        before any put. Returns how many entries were removed and their bytes.

        Raises:
            StorageError: the folder cannot be made or read. OSError: an entry cannot
                be removed.
        """
        self.prepare()
        count = size = 0
        with safepath.closing(safepath.open_root(self.folder)) as folder:
            for name in os.listdir(folder):
                info = safepath.lstat_at(folder, name)
                if info is None:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    safepath.remove_tree(folder, name)
                else:
                    os.unlink(name, dir_fd=folder)
                count += 1
                size += info.st_size
        return count, size

    def create(self) -> tuple[int, str]:
        """A new empty file in the folder, open for reading and writing, and its name.

        Raises:
            StorageError: the folder is missing and cannot be made. OSError: the file
                cannot be made.
        """
        name = STAGED_PREFIX + secrets.token_hex(16)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(self.folder / name, flags, PRIVATE_FILE), name
        except FileNotFoundError:  # removed under a running daemon: make it again
            self.prepare()
            return os.open(self.folder / name, flags, PRIVATE_FILE), name

    def remove(self, name: str) -> None:
        """Remove the staged file ``name``; a missing one is no error."""
        (self.folder / name).unlink(missing_ok=True)


def write_file(
    root: Path,
    parts: Sequence[str],
    data: IO[bytes],
    staging: StagingArea,
    before_placing: Callable[[Placement], None] = lambda _placement: None,
) -> bool:
    """Make ``parts`` (under ``root``) a regular file holding what ``data`` yields,
    making missing folders. The bytes are staged in ``staging``; once all are in, and
    before the tree is touched, ``before_placing`` is told what moving the file in will
    do. Returns False when the file held exactly that already (then nothing was staged
    or written).

    On any error the staged file is removed and the tree's content is as it was (the
    move's unnamed file may have come and gone, which moves the subvolume's generation:
    only if ``before_placing`` was called).

    Raises:
        errors.BadPath: no name. errors.LinkInPath, NotAFolder: a link or a
            non-folder where a folder is needed (checked before the upload and again
            before the move). InvalidRequest: the target is a folder. PoolFull: the
            pool is full. UndoFailed: an error whose partial work could not be undone.
    """
    if not parts:
        raise errors.BadPath("a file path is needed, not the root")
    with safepath.closing(safepath.open_root(root)) as top:
        folder, missing = safepath.open_deepest(top, parts[:-1])
        with safepath.closing(folder):
            old = None if missing else _existing(folder, parts)
    try:
        try:
            staged = _stage(staging, data, old)
        finally:
            if old is not None:
                os.close(old[0])
    except OSError as exc:
        if exc.errno in POOL_FULL:
            raise PoolFull(
                f"the pool is full: the upload of {safepath.shown(parts)} was stopped and its "
                "staged bytes removed; the branch is unchanged"
            ) from exc
        raise
    if staged is None:
        return False
    fd, name, size = staged
    try:
        _move_in(root, parts, fd, size, before_placing)
    except OSError as exc:
        if exc.errno in POOL_FULL:
            raise PoolFull(
                f"the pool is full: {safepath.shown(parts)} was uploaded but could not be "
                "moved into the working copy; the branch is unchanged"
            ) from exc
        raise
    finally:
        os.close(fd)
        staging.remove(name)
    return True


def _existing(folder: int, parts: Sequence[str]) -> tuple[int, os.stat_result] | None:
    """The target's current regular file, open; None when absent or not a regular file
    (a symlink or FIFO there is replaced, never opened).

    Raises:
        InvalidRequest: the target is a folder.
    """
    info = _target(folder, parts)
    if info is None or not stat.S_ISREG(info.st_mode):
        return None
    return safepath.open_regular(folder, parts[-1], parts), info


def _target(folder: int, parts: Sequence[str]) -> os.stat_result | None:
    """What is at the target's name in its open folder (not followed); None if absent.

    Raises:
        InvalidRequest: the target is a folder.
    """
    info = safepath.lstat_at(folder, parts[-1])
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise InvalidRequest(f"{safepath.shown(parts)} is a folder; give a file path")
    return info


def _stage(
    staging: StagingArea, data: IO[bytes], old: tuple[int, os.stat_result] | None
) -> tuple[int, str, int] | None:
    """The stream in a staged file: (open file, its name, its size); or None when it
    equals ``old``'s bytes. On any error the staged file is removed.

    Raises:
        OSError: reading the stream or writing the file failed (ENOSPC: pool full).
    """
    same = 0
    chunk = data.read(CHUNK)
    if old is not None:
        with os.fdopen(os.dup(old[0]), "rb") as current:
            while chunk and current.read(len(chunk)) == chunk:
                same += len(chunk)
                chunk = data.read(CHUNK)
            if not chunk and same == old[1].st_size:
                return None
    fd, name = staging.create()
    size = same
    try:
        if same:
            _copy_range(old[0] if old else -1, fd, same)
        while chunk:
            _write_all(fd, chunk)
            size += len(chunk)
            failpoint("put.during_write")
            chunk = data.read(CHUNK)
        if size >= FLUSH_BEFORE_MOVE:
            os.fdatasync(fd)
    except BaseException:
        os.close(fd)
        staging.remove(name)
        raise
    return fd, name, size


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


def _copy_range(source: int, target: int, size: int) -> None:
    """Copy the first ``size`` bytes of ``source`` to the start of ``target`` (a reflink
    where btrfs can), leaving ``target``'s offset at ``size``."""
    done = 0
    while done < size:
        copied = os.copy_file_range(source, target, size - done, done, done)
        if copied == 0:
            raise StorageError("the file being copied shrank while it was read")
        done += copied
    os.lseek(target, size, os.SEEK_SET)


def _move_in(
    root: Path,
    parts: Sequence[str],
    staged: int,
    size: int,
    before_placing: Callable[[Placement], None],
) -> None:
    """Give the tree the staged file (open, ``size`` bytes) at ``parts``: the one step
    that touches the tree (see the module)."""
    with safepath.closing(safepath.open_root(root)) as top:
        folder, missing = safepath.open_deepest(top, parts[:-1])
        with safepath.closing(folder):
            target = None if missing else _target(folder, parts)
            placement = Placement(
                folder=tuple(parts[: len(parts) - 1 - len(missing)]),
                made=tuple(missing),
                name=parts[-1],
                temp=None if target is None else TEMP_PREFIX + secrets.token_hex(16),
                replaced=None if target is None else target.st_ino,
            )
            before_placing(placement)
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=folder)
            with safepath.closing(fd):
                try:
                    clone_file(staged, fd)
                except CloneRefused as exc:
                    log.info("%s copied into place, not cloned: %s", safepath.shown(parts), exc)
                    _copy_range(staged, fd, size)
                old = target if target is not None and stat.S_ISREG(target.st_mode) else None
                _place(folder, placement, fd, old)


def _place(folder: int, placement: Placement, fd: int, old: os.stat_result | None) -> None:
    """Give the unnamed file ``fd`` its name, making the missing folders first; an
    existing target is replaced through the temporary name. ``old``: the regular file
    replaced, whose owner and permission bits the new one keeps."""
    if old is not None:
        os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777 if old is not None else NEW_FILE_MODE)
    name, temp = placement.name, placement.temp
    made: list[str] = []
    parent = os.dup(folder)
    try:
        for name_ in placement.made:
            os.mkdir(name_, NEW_FOLDER_MODE, dir_fd=parent)
            made.append(name_)
            following = safepath.open_child_folder(parent, name_, made)
            os.close(parent)
            parent = following
        source = f"/proc/self/fd/{fd}"
        if temp is None:
            failpoint("put.before_link")
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


def unplace(root: Path, placement: Placement) -> bool:
    """Judge a move into the tree at ``root`` that a crash interrupted, from the tree
    alone: True when it named nothing the user asked for, after removing what it left
    (its temporary name, the empty folders it made), so the tree holds what it held
    before; False when the file got its name (the tree holds the whole new file).

    Raises:
        ValueError: the placement is not one ``write_file`` makes.
        safepath errors, OSError: the tree cannot be walked or cleaned.
    """
    names = (*placement.folder, *placement.made, placement.name)
    if placement.temp is not None and (
        not placement.temp.startswith(TEMP_PREFIX) or "/" in placement.temp
    ):
        raise ValueError(f"not a temporary name: {placement.temp!r}")
    if any(n in ("", ".", "..") or "/" in n for n in names):
        raise ValueError(f"not a path in a tree: {names!r}")
    with safepath.closing(safepath.open_root(root)) as top:
        folder, missing = safepath.open_deepest(top, names[:-1])
        with safepath.closing(folder):
            target = None if missing else safepath.lstat_at(folder, placement.name)
            if placement.temp is None:
                if target is not None:
                    return False
                made = placement.made[: max(0, len(placement.made) - len(missing))]
                if made:
                    base = len(placement.folder)
                    with safepath.closing(safepath.open_folder(top, names[:base])) as start:
                        try:
                            _remove_made(start, made)
                        except OSError:  # not empty: something else was put there
                            return False
                return True
            if target is None or target.st_ino != placement.replaced:
                return False
            temp = safepath.lstat_at(folder, placement.temp)
            if temp is not None and stat.S_ISREG(temp.st_mode):
                os.unlink(placement.temp, dir_fd=folder)
            return True


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
