"""Subvolume operations on a mounted btrfs file system (the pool).

Snapshots, subvolume info and syncs (the commit path) are ioctls (``ioctl.py``); the
rest runs the ``btrfs`` command.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pfs_volume.btrfs import ioctl
from pfs_volume.btrfs.command import run_command
from pfs_volume.btrfs.ioctl import SubvolumeInfo
from pfs_volume.errors import BtrfsCommandError, StorageError
from pfs_volume.safepath import closing, open_root, remove_tree, walk_tree

BTRFS = "btrfs"
SUBVOLUME_ROOT_INODE = 256
"""Every btrfs subvolume's root directory has this inode number."""
CHANGED_PATHS = 4096
"""How many changes' paths ``changed_paths`` keeps (a reader further behind is told
that anything may have changed)."""

__all__ = ["BtrfsPool", "SubvolumeInfo"]


class BtrfsPool:
    """The btrfs file system that holds every repo of this node.

    Args:
        root: where the file system (or the part of it pfs owns) is mounted.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._changes = 0
        self._changes_lock = threading.Lock()
        self._changed: deque[tuple[int, tuple[Path, ...]]] = deque(maxlen=CHANGED_PATHS)

    @property
    def changes(self) -> int:
        """How many subvolume creations, snapshots, deletions and moves this object
        finished (or failed: one may have changed something), counted after each ends.
        Read before looking at the pool, it tells a later reader whether what it saw may
        have changed since. ``btrfs receive`` is not counted: a copy counts only once its
        holder is recorded in the metadata store, after the receive."""
        return self._changes

    def changed_paths(self, since: int) -> tuple[int, list[Path] | None]:
        """(``changes`` now, the paths the changes counted after ``since`` were made at:
        a created, snapshotted, deleted or moved subvolume or folder, both ends of a
        move), read at once; None instead of the paths when they are no longer kept
        (only the last ``CHANGED_PATHS`` are) or ``since`` is not an earlier count."""
        with self._changes_lock:
            now = self._changes
            if since > now or (
                since < now and (not self._changed or self._changed[0][0] > since + 1)
            ):
                return now, None
            return now, [p for number, paths in self._changed if number > since for p in paths]

    @contextmanager
    def _changing(self, *paths: Path) -> Iterator[None]:
        try:
            yield
        finally:
            with self._changes_lock:
                self._changes += 1
                self._changed.append((self._changes, paths))

    def create_subvolume(self, path: Path) -> None:
        """Create an empty writable subvolume at ``path`` (its parent must exist)."""
        with self._changing(path):
            run_command([BTRFS, "subvolume", "create", str(path)])

    def snapshot(self, source: Path, target: Path, *, readonly: bool) -> None:
        """Snapshot ``source`` at ``target``: O(1) in the data size.

        A snapshot flushes the source's dirty data first, so right after a large write it
        costs what that flush costs.
        """
        with self._changing(target):
            ioctl.snapshot(source, target, readonly=readonly)

    def delete_subvolume(self, path: Path) -> None:
        """Delete the subvolume at ``path`` (read-only ones too), with any subvolumes
        nested in it (a container may create one inside its working copy)."""
        with self._changing(path):
            try:
                run_command([BTRFS, "subvolume", "delete", str(path)])
            except BtrfsCommandError:
                nested = self._nested_subvolumes(path)
                if not nested:
                    raise
                for inner in nested:
                    self.delete_subvolume(inner)
                run_command([BTRFS, "subvolume", "delete", str(path)])

    def delete_tree(self, path: Path) -> None:
        """Delete a folder with everything in it, subvolumes (read-only ones too) first;
        at any depth, never following a link (``safepath.remove_tree``)."""
        with self._changing(path):
            for inner in self._nested_subvolumes(path):
                self.delete_subvolume(inner)
            with closing(open_root(path.parent)) as parent:
                remove_tree(parent, path.name)

    def move(self, source: Path, target: Path) -> None:
        """Rename a subvolume, or a folder holding some, within the pool (counted in
        ``changes``). Raises OSError."""
        with self._changing(source, target):
            source.rename(target)

    def _nested_subvolumes(self, path: Path) -> list[Path]:
        """Subvolumes inside ``path``'s subvolume, not those inside them (a walk, only on
        the error path: iterative through folder descriptors, never following a link)."""
        found: set[str] = set()
        try:
            for folder, fd, name in walk_tree(path):
                info = os.lstat(name, dir_fd=fd)
                if stat.S_ISDIR(info.st_mode) and info.st_ino == SUBVOLUME_ROOT_INODE:
                    found.add(f"{folder}/{name}" if folder else name)
        except (FileNotFoundError, NotADirectoryError):
            return []  # nothing (or no folder) there: nothing nested
        outer = [
            inner
            for inner in sorted(found)
            if not any(
                "/".join(inner.split("/")[:n]) in found for n in range(1, inner.count("/") + 1)
            )
        ]
        return [path / inner for inner in outer]

    def disk_usage(self, path: Path) -> int:
        """Bytes of data extents used under ``path``, shared extents counted once, from
        ``btrfs filesystem du`` (no qgroups needed). Small files stored inline in the
        metadata are not counted."""
        last = run_command([BTRFS, "filesystem", "du", "-s", "--raw", str(path)]).splitlines()[-1]
        _total, exclusive, shared = (int(field) for field in last.split()[:3])
        return exclusive + shared

    def free_bytes(self) -> int:
        """Bytes free in the pool, once deleted subvolumes are really gone."""
        # The cleaner removes deleted subvolumes only after a commit, and what it frees
        # counts only after the next one.
        self.sync(self.root)
        run_command([BTRFS, "subvolume", "sync", str(self.root)])
        self.sync(self.root)
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def space(self) -> tuple[int, int]:
        """(free, total) bytes of the pool as the file system reports them now (cheap:
        space that deleted subvolumes still hold counts as used)."""
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize

    def sync(self, path: Path) -> None:
        """Commit the file system's current transaction, so generations are current."""
        ioctl.sync(path)

    def info(self, path: Path) -> SubvolumeInfo:
        """Describe the subvolume at ``path``.

        Raises:
            StorageError: when ``path`` is not a subvolume.
        """
        if not self.is_subvolume(path):
            raise StorageError(f"{path} is not a btrfs subvolume")
        return ioctl.subvolume_info(path)

    def generation(self, path: Path) -> int:
        """The subvolume's generation once every pending change is committed.

        It moves whenever anything in the subvolume changes (a snapshot of it moves it
        too), so comparing it with a value read earlier tells whether the subvolume
        changed, in O(1). Reads do not move it on a ``noatime`` mount.
        """
        self.sync(path)
        return self.info(path).generation

    def changed_since(self, path: Path, generation: int | None) -> bool:
        """True when the subvolume changed after it was at ``generation``.

        Generations only grow, so a committed generation that differs already answers
        yes; only an equal one needs a sync to rule out changes not yet committed.
        """
        if generation is None or self.info(path).generation != generation:
            return True
        return self.generation(path) != generation

    @staticmethod
    def is_subvolume(path: Path) -> bool:
        """True when ``path`` is the root of a subvolume (cheap: one ``stat``)."""
        try:
            return os.stat(path, follow_symlinks=False).st_ino == SUBVOLUME_ROOT_INODE
        except FileNotFoundError:
            return False
