"""The three trees of a merge, read from read-only snapshots without following links.

Commits hold what containers wrote, links and special files included, and the daemon
is root: every path is walked one folder at a time from the snapshot's root, each
folder opened with ``O_NOFOLLOW | O_DIRECTORY``, so a link anywhere on the way means
"no such path" in that tree, never a path somewhere else. Files are opened only to
compare bytes, and only after ``fstat`` says they are regular files.

Which paths a side touched comes from ``btrfs send --no-data`` (see
``pfs_volume/btrfs/changes.py``), in time proportional to the change. The listing names
a renamed folder once, not what is inside it; every path under it counts as touched at
both its old and its new place (the rename is a deletion there and an addition here),
found by walking just that folder.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from pfs_volume.btrfs.ioctl import inode_paths
from pfs_volume.diff import Change
from pfs_volume.errors import StorageError, TooManyNames
from pfs_volume.filenames import printable
from pfs_volume.history.threeway import Node, Side, kind_of
from pfs_volume.safepath import FILE_FLAGS, FOLDER_FLAGS, entries, read_link, walk_tree

CHUNK = 1024 * 1024
OPEN_FOLDERS = 64
"""Folder descriptors kept open per run (most paths of a change share folders)."""
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
EMPTY_ROOT = Node("dir", 0o755)
"""The root of the empty tree (before a first commit): what a new subvolume's root is."""


def split(path: str) -> tuple[str, str]:
    """(folder, name) of a relative path; the folder of a top-level name is ""."""
    folder, _, name = path.rpartition("/")
    return folder, name


def node_of(
    info: os.stat_result,
    target: str | None = None,
    xattrs: tuple[tuple[str, bytes], ...] = (),
) -> Node:
    """The ``Node`` an ``lstat`` describes (``target``: a symlink's)."""
    kind = kind_of(info.st_mode)
    return Node(
        kind=kind,
        mode=stat.S_IMODE(info.st_mode),
        uid=info.st_uid,
        gid=info.st_gid,
        size=info.st_size if kind == "file" else 0,
        target=target,
        rdev=info.st_rdev if kind in ("char", "block") else 0,
        xattrs=xattrs,
    )


def read_xattrs(where: int | str) -> tuple[tuple[str, bytes], ...]:
    """The extended attributes of an open descriptor, or of a path given as
    ``/proc/self/fd/FOLDER/NAME`` (read without following a link there), sorted."""
    follow = isinstance(where, int)  # a descriptor is what it is: nothing to follow
    try:
        names = os.listxattr(where, follow_symlinks=follow)
        return tuple(sorted((n, os.getxattr(where, n, follow_symlinks=follow)) for n in names))
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA):
            return ()
        raise


def at(folder: int, name: str) -> str:
    """A path naming ``name`` in the open ``folder`` (for calls with no ``dir_fd``): the
    kernel resolves the folder from the descriptor, so no link on the way is followed."""
    return f"/proc/self/fd/{folder}/{name}"


class FolderWalker:
    """Opens folders of one tree by relative path, never through a link, and keeps the
    most recently used ones open. Close it (or use it as a context manager)."""

    def __init__(self, root: Path, *, read_only: bool = True) -> None:
        self.root = root
        self._open: OrderedDict[str, int] = OrderedDict()
        self._absent: set[str] | None = set() if read_only else None
        """Folders found missing (only for a read-only tree, where they stay missing)."""
        self.linked: dict[str, int] = {}
        """Inode numbers of the regular files ``node`` met that have other names too."""

    def folder(self, path: str) -> int | None:
        """A descriptor of the folder at ``path`` ("" is the root; owned by the walker),
        or None when no folder is there (absent, a file, or a link on the way). Opened
        from the nearest folder above it that is open already, one name at a time
        (iterative: any depth)."""
        if path in self._open:
            self._open.move_to_end(path)
            return self._open[path]
        # The nearest folder above that is open (or known absent), found by cutting one
        # name at a time off the end: each prefix is one slice of ``path``, and a folder
        # found absent is remembered with all it was asked for, so a deep path under a
        # missing one stops at its parent (linear in depth, not in its square or cube).
        known = len(path)
        while known > 0:
            prefix = path[:known]
            if prefix in self._open:
                break
            if self._absent is not None and prefix in self._absent:
                self._absent.add(path)
                return None
            known = max(path.rfind("/", 0, known), 0)
        prefix = path[:known]
        if prefix not in self._open:
            self._open[prefix] = os.open(self.root, FOLDER_FLAGS)  # pfs's own path
        fd = self._open[prefix]
        rest = path[known:].lstrip("/")
        for name in rest.split("/") if rest else []:
            prefix = f"{prefix}/{name}" if prefix else name
            try:
                fd = os.open(name, FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in _GONE:
                    if self._absent is not None:
                        self._absent.update((prefix, path))
                    return None
                raise
            self._open[prefix] = fd
            while len(self._open) > OPEN_FOLDERS:
                os.close(self._open.popitem(last=False)[1])
        return fd

    def _root(self) -> int:
        fd = self.folder("")
        assert fd is not None
        return fd

    def forget(self, path: str) -> None:
        """Close the descriptors of the folder at ``path`` and those under it (it is
        about to be removed)."""
        for known in [k for k in self._open if k == path or k.startswith(path + "/")]:
            os.close(self._open.pop(known))

    def node(self, path: str) -> Node | None:
        """What the tree holds at ``path`` ("" is the root folder itself), never following
        a link; None for nothing."""
        if path == "":
            return node_of(os.fstat(self._root()), xattrs=read_xattrs(self._root()))
        folder, name = split(path)
        fd = self.folder(folder)
        if fd is None:
            return None
        try:
            info = os.lstat(name, dir_fd=fd)
        except OSError as exc:
            if exc.errno in _GONE:
                return None
            raise
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            self.linked[path] = info.st_ino
        target = read_link(fd, name, printable(path)) if stat.S_ISLNK(info.st_mode) else None
        return node_of(info, target, read_xattrs(at(fd, name)))

    def open_file(self, path: str) -> int:
        """A read-only descriptor of the regular file at ``path`` (the caller closes it).

        Raises:
            StorageError: when no regular file is there.
        """
        folder, name = split(path)
        fd = self.folder(folder)
        if fd is not None:
            try:
                # Checked before the open too: a device node is never opened at all.
                if not stat.S_ISREG(os.lstat(name, dir_fd=fd).st_mode):
                    raise StorageError(f"{path} in {self.root} is not a regular file any more")
                handle = os.open(name, FILE_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in _GONE:
                    raise
            else:
                if stat.S_ISREG(os.fstat(handle).st_mode):
                    return handle
                os.close(handle)
        raise StorageError(f"{path} in {self.root} is not a regular file any more")

    def walk(self, path: str) -> Iterator[str]:
        """Every path under the folder at ``path`` (not ``path`` itself), links listed
        and never followed, nothing else opened; nothing when no folder is there.
        Folders are opened one at a time through ``folder`` (any depth or width)."""
        pending = [path]
        while pending:
            folder = pending.pop()
            fd = self.folder(folder)
            if fd is None:
                continue
            for name, is_folder in entries(fd):
                inner = f"{folder}/{name}" if folder else name
                yield inner
                if is_folder:
                    pending.append(inner)

    def close(self) -> None:
        """Close every folder descriptor it holds."""
        while self._open:
            os.close(self._open.popitem()[1])

    def __enter__(self) -> FolderWalker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SnapshotTrees:
    """``threeway.Trees`` over three snapshots (None: the empty tree); answers cached.

    Args:
        base, ours, theirs: the snapshots' roots, or None for an empty tree.
    """

    def __init__(self, base: Path | None, ours: Path | None, theirs: Path | None) -> None:
        roots = {Side.BASE: base, Side.OURS: ours, Side.THEIRS: theirs}
        self.roots = roots
        self.walkers = {side: FolderWalker(root) for side, root in roots.items() if root}
        self._nodes: dict[tuple[Side, str], Node | None] = {}

    def node(self, side: Side, path: str) -> Node | None:
        """What ``side`` holds at ``path``."""
        key = (side, path)
        if key not in self._nodes:
            walker = self.walkers.get(side)
            if walker is not None:
                self._nodes[key] = walker.node(path)
            else:  # the empty tree: a bare root folder, as a new working copy has
                self._nodes[key] = EMPTY_ROOT if path == "" else None
        return self._nodes[key]

    def same_bytes(self, a: Side, b: Side, path: str) -> bool:
        """True when the two sides' files at ``path`` hold the same bytes."""
        first = self.walkers[a].open_file(path)
        try:
            second = self.walkers[b].open_file(path)
            try:
                return _same_content(first, second)
            finally:
                os.close(second)
        finally:
            os.close(first)

    def touched(self, side: Side, changes: list[Change] | None) -> set[str]:
        """Every path ``side`` may hold differently from the base.

        Args:
            side: ``Side.OURS`` or ``Side.THEIRS``.
            changes: what ``btrfs send`` listed from the base to that side; None when
                one of the two is the empty tree (then every path of either counts).
        """
        found = {""}  # the root's own mode and owner (the listing never names the root)
        if changes is None:
            for walker in (self.walkers.get(Side.BASE), self.walkers.get(side)):
                if walker is not None:
                    found.update(walker.walk(""))
            return found
        for change in changes:
            found.add(change.path)
            if change.old_path is None:
                continue
            found.add(change.old_path)
            # A renamed folder: everything in it moved too (the listing names it once).
            found.update(self.walkers[side].walk(change.path))
            found.update(self.walkers[Side.BASE].walk(change.old_path))
        return self._with_other_names(side, found)

    def _with_other_names(self, side: Side, found: set[str]) -> set[str]:
        """``found`` and every other name of the hard-linked files in it: a change made
        through one name is a change at all of them, though the listing names one."""
        names = set(found)
        for path in sorted(found):  # folders before what is in them: one open a level
            for which in (side, Side.BASE):
                walker = self.walkers.get(which)
                if walker is None or self.node(which, path) is None:
                    continue
                inode = walker.linked.get(path)
                if inode is not None:
                    names.update(_names_of(walker.root, inode))
        return names

    def close(self) -> None:
        """Close every descriptor."""
        for walker in self.walkers.values():
            walker.close()

    def __enter__(self) -> SnapshotTrees:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _names_of(root: Path, inode: int) -> list[str]:
    """Every name of inode ``inode`` in the snapshot at ``root``: asked of btrfs, or,
    for a file with more names than its answer holds, found by walking the snapshot."""
    try:
        return inode_paths(root, inode)
    except TooManyNames:
        found = []
        for folder, fd, name in walk_tree(root):
            info = os.lstat(name, dir_fd=fd)
            if info.st_ino == inode and stat.S_ISREG(info.st_mode):
                found.append(f"{folder}/{name}" if folder else name)
        return found


def _same_content(first: int, second: int) -> bool:
    if os.fstat(first).st_size != os.fstat(second).st_size:
        return False
    while True:
        a = os.read(first, CHUNK)
        b = os.read(second, CHUNK)
        if a != b:
            return False
        if not a:
            return True
