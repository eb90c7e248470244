"""Paths inside a tree that a container wrote, walked without ever following a link.

The daemon runs as root and the trees it reads and writes (commits, working copies)
hold whatever containers put there: symlinks to ``/etc``, FIFOs, device nodes, names
that are not UTF-8. So a path is never handed to the kernel whole. It is split into
names (``split``), and each folder is opened from the one before it with
``O_NOFOLLOW | O_DIRECTORY`` (``openat``), so a symlink anywhere in the path is refused
rather than followed, and a file where a folder should be is named in the error. A file
is read only when ``fstatat`` and then ``fstat`` of the open descriptor say it is a
regular file, and it is opened with ``O_NOFOLLOW | O_NONBLOCK``: a FIFO or device is
never opened.

Everything here is plain ``os``; the errors are pfs's own (``pfs_volume.errors``) with a
default HTTP status a caller may translate. Names are ``str`` as ``os`` gives them
(``surrogateescape`` for bytes that are not UTF-8, see ``pfs_volume.filenames``).
File descriptors returned are the caller's to close (``closing`` helps).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from pfs_volume.errors import (
    BadPath,
    Changed,
    LinkInPath,
    Missing,
    NotAFolder,
    NotRegular,
)
from pfs_volume.filenames import printable, to_bytes

NAME_MAX = 255
"""Bytes in one name (a path component), as Linux file systems allow."""
PATH_MAX = 4096
"""Bytes in a whole path as given."""

MAX_OPEN_FOLDERS = 64
"""Descriptors one walk of a tree keeps open at most, whatever its depth
(``FolderChain``)."""

T = TypeVar("T")

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "folder",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def kind_of(mode: int) -> str:
    """``file``, ``folder``, ``symlink``, ``fifo``, ``socket``, ``character device`` or
    ``block device``, from an ``st_mode``."""
    return KINDS.get(stat.S_IFMT(mode), "unknown")


def shown(parts: Sequence[str]) -> str:
    """A path of names for messages: ``/a/b``, escaped for people."""
    return "/" + printable("/".join(parts))


def split(text: str) -> tuple[str, ...]:
    """The names of a tree-relative path as a user gave it (a leading ``/`` is the
    root; empty names and ``.`` are dropped). ``()`` is the root itself.

    Raises:
        BadPath: a NUL byte, a ``..`` name, a name over NAME_MAX bytes or a path over
            PATH_MAX bytes (UTF-8, or the original bytes for names that are not).
    """
    raw = to_bytes(text)
    if b"\0" in raw:
        raise BadPath(f"path {printable(text[:80])!r} holds a NUL byte; names cannot")
    if len(raw) > PATH_MAX:
        raise BadPath(
            f"path {printable(text[:60])}... is {len(raw)} bytes long; a path is at most "
            f"{PATH_MAX} bytes"
        )
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if ".." in parts:
        raise BadPath(
            f"path {printable(text)!r} climbs out with '..'; give a path inside the "
            "commit, from its root"
        )
    for part in parts:
        size = len(to_bytes(part))
        if size > NAME_MAX:
            raise BadPath(
                f"the name {printable(part[:40])}... in the path is {size} bytes long; a "
                f"file or folder name is at most {NAME_MAX} bytes (UTF-8 encoded)"
            )
    return parts


def lstat_at(folder: int, name: str) -> os.stat_result | None:
    """What ``name`` in the open folder is, without following it; None if absent."""
    try:
        return os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_root(path: os.PathLike[str] | str) -> int:
    """Open a tree's root folder (a path pfs itself made; its last name is not followed)."""
    return os.open(path, FOLDER_FLAGS)


def read_link(folder: int, name: str, where: Sequence[str] | str) -> str:
    """The target of the link ``name`` of an open folder, which an lstat just showed.

    Raises:
        Changed: it is no longer a link (or gone): something writes to the tree.
    """
    try:
        return os.readlink(name, dir_fd=folder)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
        shown_where = where if isinstance(where, str) else shown(where)
        raise Changed(
            f"{shown_where} changed while pfs read it (a link, then something else): "
            "something writes to the tree; try again"
        ) from None


def open_child_folder(folder: int, name: str, where: Sequence[str]) -> int:
    """Open the folder ``name`` of an open folder, never following a link.

    Args:
        where: the path of ``name`` from the root (for messages).
    Raises:
        LinkInPath, NotAFolder, Missing: naming ``where``.
    """
    try:
        return os.open(name, FOLDER_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        raise Missing(f"there is no {shown(where)}", "/".join(where)) from None
    except OSError as exc:
        info = lstat_at(folder, name)
        if info is None:
            raise Missing(f"there is no {shown(where)}", "/".join(where)) from None
        if stat.S_ISLNK(info.st_mode):
            target = read_link(folder, name, where)
            raise LinkInPath(
                f"{shown(where)} is a symlink (to {printable(target)}), not a folder; paths "
                "never go through links: give the path without it",
                "/".join(where),
                target,
            ) from None
        if not stat.S_ISDIR(info.st_mode):
            kind = kind_of(info.st_mode)
            raise NotAFolder(
                f"{shown(where)} is a {kind}, not a folder", "/".join(where), kind
            ) from None
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Changed(
                f"{shown(where)} changed while pfs opened it (a link or file, then a folder "
                "again): something writes to the tree; try again"
            ) from None
        raise exc


def open_folder(root: int, parts: Sequence[str]) -> int:
    """Open the folder at ``parts`` under the open ``root``, name by name.

    Raises:
        LinkInPath, NotAFolder, Missing: for the first name that is not a folder.
    """
    current = os.dup(root)
    try:
        for depth, name in enumerate(parts):
            following = open_child_folder(current, name, parts[: depth + 1])
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def open_parent(root: os.PathLike[str] | str, parts: Sequence[str]) -> int:
    """Open the folder that holds the last name of ``parts`` under the tree at ``root``
    (the root itself for the root or a name in it).

    Raises:
        LinkInPath, NotAFolder, Missing: for the first name that is not a folder.
    """
    with closing(open_root(root)) as top:
        return open_folder(top, parts[:-1])


def open_deepest(root: int, parts: Sequence[str]) -> tuple[int, tuple[str, ...]]:
    """The deepest folder of ``parts`` that exists, open, and the names below it that do
    not exist yet (to be made).

    Raises:
        LinkInPath, NotAFolder: for a name that exists and is not a folder.
    """
    current = os.dup(root)
    try:
        for depth, name in enumerate(parts):
            try:
                following = open_child_folder(current, name, parts[: depth + 1])
            except Missing:
                return current, tuple(parts[depth:])
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current, ()


def make_folders(folder: int, names: Sequence[str], mode: int = 0o755) -> int:
    """Make ``names`` as nested folders under the open ``folder``; the last one, open
    (``folder`` itself, duplicated, when ``names`` is empty)."""
    current = os.dup(folder)
    try:
        for depth, name in enumerate(names):
            os.mkdir(name, mode, dir_fd=current)
            following = open_child_folder(current, name, names[: depth + 1])
            os.close(current)
            current = following
    except BaseException:
        os.close(current)
        raise
    return current


def open_regular(folder: int, name: str, where: Sequence[str]) -> int:
    """Open the regular file ``name`` of an open folder for reading. Anything else is
    refused before it is opened (``fstatat``), and checked again after (``fstat``).

    Raises:
        Missing: no such name. NotRegular: a folder, symlink, FIFO, device or socket.
    """
    info = lstat_at(folder, name)
    if info is None:
        raise Missing(f"there is no {shown(where)}", "/".join(where))
    _require_regular(info, where)
    fd = os.open(name, FILE_FLAGS, dir_fd=folder)
    try:
        _require_regular(os.fstat(fd), where)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _require_regular(info: os.stat_result, where: Sequence[str]) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = kind_of(info.st_mode)
        raise NotRegular(
            f"{shown(where)} is a {kind}, not a regular file; only regular files are read",
            kind,
        )


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    """Close ``fd`` when the block ends."""
    try:
        yield fd
    finally:
        os.close(fd)


def entries(folder: int) -> list[tuple[str, bool]]:
    """The names in an open folder, each with whether it is a folder (links are not),
    read through a fresh descriptor so the folder's own offset is left alone."""
    fd = os.open(".", FOLDER_FLAGS, dir_fd=folder)
    try:
        with os.scandir(fd) as found:
            return [(e.name, e.is_dir(follow_symlinks=False)) for e in found]
    finally:
        os.close(fd)


class FolderChain(Generic[T]):
    """The folders a walk is in, from its top down to where it is, each with what the walk
    still has to do there; at most ``MAX_OPEN_FOLDERS`` of them open at once, whatever
    the depth. A container decides how deep a tree goes and what each level holds, so a
    descriptor per level would let it exhaust the daemon's (a systemd service's soft
    limit is 1024): a folder pushed far below one closes that one, and popping back to it
    opens it again through ``..`` of the folder below, checked to be the very folder
    (device and inode) it was.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._ids: list[tuple[int, int]] = []
        self.items: list[T] = []

    def __len__(self) -> int:
        return len(self._fds)

    def push(self, fd: int, item: T) -> None:
        """Go into the open folder ``fd`` (the chain owns it from now on)."""
        try:
            info = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fds.append(fd)
        self._ids.append((info.st_dev, info.st_ino))
        self.items.append(item)
        far = len(self._fds) - 1 - MAX_OPEN_FOLDERS
        if far >= 0 and self._fds[far] >= 0:
            os.close(self._fds[far])
            self._fds[far] = -1

    def fd(self) -> int:
        """The innermost folder, open."""
        return self._fds[-1]

    def pop(self) -> T:
        """Leave the innermost folder (closed); the one above is open again.

        Raises:
            Changed: the folder above is not the one the walk came down from (moved).
        """
        fd = self._fds.pop()
        self._ids.pop()
        item = self.items.pop()
        try:
            if self._fds and self._fds[-1] < 0:
                self._fds[-1] = _reopen_parent(fd, self._ids[-1])
        finally:
            os.close(fd)
        return item

    def close(self) -> None:
        """Close every folder still open."""
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)
        self._fds, self._ids, self.items = [], [], []


def _reopen_parent(fd: int, expected: tuple[int, int]) -> int:
    parent = os.open("..", FOLDER_FLAGS, dir_fd=fd)
    info = os.fstat(parent)
    if (info.st_dev, info.st_ino) != expected:
        os.close(parent)
        raise Changed(
            "a folder moved while pfs walked the tree under it: something writes to the "
            "tree; try again"
        )
    return parent


def remove_tree(folder: int, name: str) -> None:
    """Remove the folder ``name`` in ``folder`` and everything in it, never following a
    link, at any depth: iterative (no recursion limit), with at most
    ``MAX_OPEN_FOLDERS`` descriptors open (``FolderChain``).

    Raises:
        OSError: when the file system refuses (the tree is then partly removed).
        Changed: a folder moved while it was removed.
    """
    # Each item: the folder's name, and its subfolders still to remove.
    chain: FolderChain[tuple[str, list[str]]] = FolderChain()
    try:
        _enter(chain, folder, name)
        while chain:
            current, pending = chain.items[-1]
            if pending:
                _enter(chain, chain.fd(), pending.pop())
                continue
            chain.pop()
            os.rmdir(current, dir_fd=chain.fd() if chain else folder)
    finally:
        chain.close()


def _enter(chain: FolderChain[tuple[str, list[str]]], parent: int, name: str) -> None:
    """Open ``name`` onto the chain and unlink everything in it but its folders."""
    fd = os.open(name, FOLDER_FLAGS, dir_fd=parent)
    chain.push(fd, (name, []))
    subfolders = chain.items[-1][1]
    for entry, is_folder in entries(fd):
        if is_folder:
            subfolders.append(entry)
        else:
            os.unlink(entry, dir_fd=fd)


def walk_tree(root: os.PathLike[str] | str) -> Iterator[tuple[str, int, str]]:
    """Every entry under ``root`` as ``(folder path relative to root, folder fd, name)``
    (the fd is valid while the caller handles that entry; ``lstat`` the name in it),
    never following a link, at any depth: iterative, with at most ``MAX_OPEN_FOLDERS``
    descriptors open (``FolderChain``).

    Raises:
        Changed: a folder moved while it was walked.
    """
    # Each item: the folder's path from root, and its entries still to yield.
    chain: FolderChain[tuple[str, list[tuple[str, bool]]]] = FolderChain()
    try:
        top = open_root(root)
        chain.push(top, ("", []))
        chain.items[-1][1].extend(entries(top))
        while chain:
            path, pending = chain.items[-1]
            if not pending:
                chain.pop()
                continue
            name, is_folder = pending.pop()
            yield path, chain.fd(), name
            if is_folder:
                child = os.open(name, FOLDER_FLAGS, dir_fd=chain.fd())
                chain.push(child, (f"{path}/{name}" if path else name, []))
                chain.items[-1][1].extend(entries(child))
    finally:
        chain.close()
