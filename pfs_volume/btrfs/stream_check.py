"""A send stream checked command by command before ``btrfs receive`` runs it.

``btrfs receive --chroot`` alone does not keep a stream inside its subvolume: it joins
the stream's paths to the subvolume's and calls the plain path syscalls, so a stream
that makes a link ``x -> /`` and then renames ``x/SIBLING`` renames another commit in
the receiving folder; and it opens clone sources and parents through the pool's mount
(outside the chroot), so a clone path with ``..`` opens files on the host. This module
refuses, before btrfs sees them, the commands of a stream that would reach outside:

* exactly one subvolume, the expected one: its ``subvol`` (full) or ``snapshot``
  (incremental, on the expected base) command first, an ``end`` command last;
* every path relative to that subvolume, without ``.``, ``..``, empty components or NUL;
* no path goes through anything but a folder, and no command that follows a link
  (write, truncate, chmod, clone) is aimed at one: the stream's own namespace is
  modelled, looking into the (read-only) base for what the stream did not make itself;
* clones only from the subvolume being received or its base, from a regular file.

``btrfs send`` never makes a stream these rules refuse.
"""

from __future__ import annotations

import os
import stat
import struct
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pfs_volume.errors import StreamRefused

MAGIC = b"btrfs-stream\0"
VERSION = 1
HEADER = struct.Struct("<13sI")
COMMAND = struct.Struct("<IHI")
TLV = struct.Struct("<HH")
U64 = struct.Struct("<Q")
MAX_COMMAND = 64 * 1024
"""Bytes a command's attributes may have (btrfs send's buffer; btrfs receive refuses more)."""

# Command numbers of format version 1 (enum btrfs_send_cmd).
SUBVOL, SNAPSHOT, MKFILE, MKDIR, MKNOD, MKFIFO, MKSOCK, SYMLINK = range(1, 9)
RENAME, LINK, UNLINK, RMDIR, SET_XATTR, REMOVE_XATTR, WRITE, CLONE = range(9, 17)
TRUNCATE, CHMOD, CHOWN, UTIMES, END, UPDATE_EXTENT = range(17, 23)
NAMES = {
    SUBVOL: "subvol", SNAPSHOT: "snapshot", MKFILE: "mkfile", MKDIR: "mkdir",
    MKNOD: "mknod", MKFIFO: "mkfifo", MKSOCK: "mksock", SYMLINK: "symlink",
    RENAME: "rename", LINK: "link", UNLINK: "unlink", RMDIR: "rmdir",
    SET_XATTR: "set_xattr", REMOVE_XATTR: "remove_xattr", WRITE: "write", CLONE: "clone",
    TRUNCATE: "truncate", CHMOD: "chmod", CHOWN: "chown", UTIMES: "utimes", END: "end",
    UPDATE_EXTENT: "update_extent",
}  # fmt: skip
# Attribute types (enum btrfs_send_attr).
A_UUID, A_CTRANSID = 1, 2
A_PATH, A_PATH_TO, A_PATH_LINK = 15, 16, 17
A_DATA, A_CLONE_UUID, A_CLONE_PATH = 19, 20, 22
MAX_ATTR = 24
_NOT_NAMES = frozenset(("", ".", ".."))
"""Path parts that name no entry of the subvolume (or one outside it)."""

DIR, FILE, LINK_KIND, OTHER = "folder", "regular file", "symbolic link", "special file"
MAKES = {MKFILE: FILE, MKDIR: DIR, MKNOD: OTHER, MKFIFO: OTHER, MKSOCK: OTHER, SYMLINK: LINK_KIND}
FILE_ONLY = {WRITE, TRUNCATE, CLONE}
"""Commands whose path btrfs receive opens following a final link: a file is due."""


@dataclass
class _Node:
    """An entry of the subvolume being received. A folder that was in the base has
    ``origin`` (its path there), and its entries not yet seen are looked up there."""

    kind: str
    origin: Path | None = None
    entries: dict[str, _Node | None] = field(default_factory=dict)

    def entry(self, name: str) -> _Node | None:
        if name in self.entries:
            return self.entries[name]
        if self.origin is None:
            return None
        try:
            mode = os.lstat(self.origin / name).st_mode
        except FileNotFoundError:
            return None  # not kept: a stream may ask for any number of missing names
        found = _Node(_kind(mode), self.origin / name if stat.S_ISDIR(mode) else None)
        self.entries[name] = found
        return found

    def forget(self, name: str) -> None:
        """``name`` is gone. Only a name the base holds is kept (as None, hiding the
        base's entry): the model holds no more names than the base and the tree the
        stream leaves, however many names a stream makes and removes."""
        if self.origin is not None and os.path.lexists(self.origin / name):
            self.entries[name] = None
        else:
            self.entries.pop(name, None)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISREG(mode):
        return FILE
    return LINK_KIND if stat.S_ISLNK(mode) else OTHER


@dataclass(frozen=True)
class Base:
    """The subvolume an incremental stream must build on: its path in the pool and the
    UUIDs it is known by (its received UUID, and its own UUID). Once btrfs built on it,
    only its received UUID: btrfs finds a clone's source by received UUID alone, and by
    its own UUID would find another subvolume (one that received a stream naming it)."""

    path: Path
    uuids: frozenset[uuidlib.UUID]


class StreamChecker:
    """Checks one send stream that must make the subvolume ``name``.

    Args:
        name: the subvolume the stream must make (its ``subvol``/``snapshot`` name).
        base: the subvolume an incremental stream must build on; None for a full stream.
        started: called once the first command reached btrfs and before any other does
            (to check what btrfs made of it); for an incremental stream, it answers the
            subvolume btrfs really built on (a copy of ``base``, when not ``base`` itself)
            with the UUIDs a clone may name it by, which the rest of the stream is then
            checked against.
    """

    def __init__(self, name: str, base: Base | None, started: Callable[[], Base | None]) -> None:
        self.name = name
        self.base = base
        self._started = started
        self._buffer = bytearray()
        self._header = False
        self._commands = 0
        self._ended = False
        self._sent_uuid: uuidlib.UUID | None = None
        self._root = _Node(DIR, base.path if base else None)

    def check(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The bytes of ``chunks``, yielded only as whole commands that passed.

        Raises:
            StreamRefused: a command would reach outside, or the stream is not one
                subvolume's stream of format 1 (the message says which and why).
        """
        for chunk in chunks:
            self._buffer += chunk
            yield from self._whole_commands()
        if self._buffer or not self._ended:
            raise self._refused("it ends before its end command (cut short?)")

    def _whole_commands(self) -> Iterator[bytes]:
        buffer = self._buffer
        done = 0
        if not self._header:
            if len(buffer) < HEADER.size:
                return
            magic, version = HEADER.unpack_from(buffer)
            if magic != MAGIC:
                raise self._refused("it is not a btrfs send stream (no btrfs-stream header)")
            if version != VERSION:
                raise self._refused(f"it is of format {version}; pfs receives format 1 only")
            self._header = True
            done = HEADER.size
        while len(buffer) - done >= COMMAND.size:
            length, cmd, _crc = COMMAND.unpack_from(buffer, done)
            if length > MAX_COMMAND:
                raise self._refused(f"a command of {length} bytes (at most {MAX_COMMAND})")
            end = done + COMMAND.size + length
            if len(buffer) < end:
                break
            self._command(cmd, self._attributes(buffer, done + COMMAND.size, end, cmd))
            done = end
            if self._commands == 1:
                yield bytes(buffer[:done])
                del buffer[:done]
                done = 0
                built_on = self._started()
                if self.base is not None and built_on is not None:
                    self.base = built_on
                    self._root = _Node(DIR, built_on.path)
        if done:
            yield bytes(buffer[:done])
            del buffer[:done]

    def _attributes(self, buffer: bytearray, start: int, end: int, cmd: int) -> dict[int, bytes]:
        attrs: dict[int, bytes] = {}
        at = start
        while at < end:
            if end - at < TLV.size:
                raise self._refused(f"a {_name(cmd)} command with a cut attribute")
            kind, length = TLV.unpack_from(buffer, at)
            at += TLV.size
            if not 0 < kind <= MAX_ATTR or kind in attrs or at + length > end:
                raise self._refused(f"a {_name(cmd)} command with a malformed attribute {kind}")
            attrs[kind] = bytes(buffer[at : at + length]) if kind != A_DATA else b""
            at += length
        return attrs

    def _command(self, cmd: int, attrs: dict[int, bytes]) -> None:
        self._commands += 1
        if self._ended:
            raise self._refused("commands follow its end command")
        if cmd not in NAMES:
            raise self._refused(f"an unknown command {cmd}")
        if self._commands == 1:
            self._begin(cmd, attrs)
            return
        if cmd in (SUBVOL, SNAPSHOT):
            raise self._refused("it makes a second subvolume (a stream holds one commit)")
        if cmd == END:
            self._ended = True
        elif cmd in MAKES:
            self._make(cmd, self._path(cmd, attrs, A_PATH), MAKES[cmd])
        elif cmd == RENAME:
            self._rename(self._path(cmd, attrs, A_PATH), self._path(cmd, attrs, A_PATH_TO))
        elif cmd == LINK:
            existing = self._path(cmd, attrs, A_PATH_LINK)
            node = self._lookup(cmd, existing)
            if node is None or node.kind == DIR:
                raise self._refused(f"link of {_show(existing)}, which is no file it can link")
            self._make(cmd, self._path(cmd, attrs, A_PATH), node.kind)
        elif cmd in (UNLINK, RMDIR):
            self._remove(cmd, self._path(cmd, attrs, A_PATH))
        else:
            self._touch(cmd, attrs)

    def _begin(self, cmd: int, attrs: dict[int, bytes]) -> None:
        if cmd not in (SUBVOL, SNAPSHOT):
            raise self._refused(f"it starts with {_name(cmd)}, not with a subvol or snapshot")
        name = attrs.get(A_PATH, b"")
        if name != os.fsencode(self.name):
            raise self._refused(
                f"it makes the subvolume {_show_bytes(name)} where {self.name!r} is due"
            )
        self._sent_uuid = self._uuid(cmd, attrs, A_UUID)
        if cmd == SUBVOL:
            if self.base is not None:
                raise self._refused("it is a full stream where one on a base was asked for")
            return
        parent = self._uuid(cmd, attrs, A_CLONE_UUID)
        if self.base is None or parent not in self.base.uuids:
            raise self._refused(
                "it is a snapshot of a subvolume other than the base it was asked against"
            )

    def _touch(self, cmd: int, attrs: dict[int, bytes]) -> None:
        path = self._path(cmd, attrs, A_PATH)
        node = self._lookup(cmd, path)
        if node is None:
            raise self._refused(f"{_name(cmd)} of {_show(path)}, which does not exist")
        if cmd in FILE_ONLY and node.kind != FILE:
            raise self._refused(f"{_name(cmd)} of {_show(path)}, a {node.kind}, not a file")
        if cmd == CHMOD and node.kind == LINK_KIND:
            raise self._refused(f"chmod of {_show(path)}, a symbolic link (chmod follows it)")
        if cmd == CLONE:
            self._clone_source(attrs)

    def _clone_source(self, attrs: dict[int, bytes]) -> None:
        source = self._uuid(CLONE, attrs, A_CLONE_UUID)
        path = self._path(CLONE, attrs, A_CLONE_PATH)
        if source == self._sent_uuid:
            node = self._lookup(CLONE, path)
        elif self.base is not None and source in self.base.uuids:
            node = _Node(DIR, self.base.path)
            for name in path:
                node = node.entry(name) if node and node.kind == DIR else None
        else:
            raise self._refused(
                "a clone from a subvolume that is neither it nor its base (by the base's "
                "received UUID: the UUID btrfs finds a clone's source by)"
            )
        if node is None or node.kind != FILE:
            raise self._refused(f"a clone from {_show(path)}, which is no regular file")

    def _make(self, cmd: int, path: tuple[str, ...], kind: str) -> None:
        folder = self._folder(cmd, path)
        if folder.entry(path[-1]) is not None:
            raise self._refused(f"{_name(cmd)} of {_show(path)}, which exists already")
        folder.entries[path[-1]] = _Node(kind)

    def _rename(self, path: tuple[str, ...], to: tuple[str, ...]) -> None:
        node = self._lookup(RENAME, path)
        if node is None:
            raise self._refused(f"rename of {_show(path)}, which does not exist")
        if to[: len(path)] == path:
            raise self._refused(f"rename of {_show(path)} into itself")
        target = self._folder(RENAME, to)
        self._folder(RENAME, path).forget(path[-1])
        target.entries[to[-1]] = node

    def _remove(self, cmd: int, path: tuple[str, ...]) -> None:
        node = self._lookup(cmd, path)
        if node is None or (node.kind == DIR) != (cmd == RMDIR):
            raise self._refused(f"{_name(cmd)} of {_show(path)}, which is no such entry")
        self._folder(cmd, path).forget(path[-1])

    def _folder(self, cmd: int, path: tuple[str, ...]) -> _Node:
        """The folder that holds ``path`` (which must name an entry, not the root)."""
        if not path:
            raise self._refused(f"{_name(cmd)} of the subvolume's root itself")
        folder = self._lookup(cmd, path[:-1])
        if folder is None or folder.kind != DIR:
            raise self._refused(f"{_name(cmd)} of {_show(path)}: no such folder")
        return folder

    def _lookup(self, cmd: int, path: tuple[str, ...]) -> _Node | None:
        node: _Node | None = self._root
        for depth, name in enumerate(path):
            assert node is not None
            if node.kind != DIR:
                raise self._refused(
                    f"{_name(cmd)} of {_show(path)} goes through {_show(path[:depth])}, a "
                    f"{node.kind}: it would reach outside the subvolume"
                )
            node = node.entry(name)
            if node is None:
                return None
        return node

    def _path(self, cmd: int, attrs: dict[int, bytes], kind: int) -> tuple[str, ...]:
        raw = attrs.get(kind)
        if raw is None:
            raise self._refused(f"a {_name(cmd)} command without its path")
        if raw == b"":
            return ()
        parts = tuple(raw.decode("utf-8", "surrogateescape").split("/"))  # os.fsdecode
        if b"\0" in raw or not _NOT_NAMES.isdisjoint(parts):
            raise self._refused(
                f"{_name(cmd)} of {_show_bytes(raw)}: a path must be relative to the "
                "subvolume, without '.', '..' or empty parts"
            )
        return parts

    def _uuid(self, cmd: int, attrs: dict[int, bytes], kind: int) -> uuidlib.UUID:
        raw = attrs.get(kind, b"")
        if len(raw) != 16:
            raise self._refused(f"a {_name(cmd)} command without a valid UUID")
        return uuidlib.UUID(bytes=raw)

    def _refused(self, why: str) -> StreamRefused:
        where = f" (command {self._commands})" if self._commands else ""
        return StreamRefused(f"the send stream of commit {self.name} was refused: {why}{where}")


def _name(cmd: int) -> str:
    return NAMES.get(cmd) or f"command {cmd}"


def _show(path: tuple[str, ...]) -> str:
    return repr("/".join(path)) if path else "the subvolume's root"


def _show_bytes(raw: bytes) -> str:
    return repr(raw.decode(errors="replace"))
