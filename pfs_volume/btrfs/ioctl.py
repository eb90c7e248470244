"""The btrfs calls on hot paths, made as ioctls (linux/btrfs.h, linux/fs.h).

A commit snapshots one subvolume and reads generations twice. Run as ``btrfs`` commands,
those cost a process each: measured here, process start-up was two thirds of a commit.
These ioctls do the same work in the kernel with no process at all. A put moves its
staged file into a working copy by cloning its extents (``FICLONE``: a reflink, metadata
only). Everything off the hot path still runs the ``btrfs`` command (``pool.py``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pfs_volume.errors import CloneRefused, StorageError, TooManyNames

BTRFS_IOCTL_MAGIC = 0x94
BTRFS_SUBVOL_NAME_MAX = 4039
BTRFS_VOL_NAME_MAX = 255
BTRFS_UUID_SIZE = 16
BTRFS_SUBVOL_RDONLY = 1 << 1
"""Snapshot-create flag: make the snapshot read-only."""
BTRFS_ROOT_SUBVOL_RDONLY = 1 << 0
"""Subvolume-info flag: the subvolume is read-only."""


class _VolArgsV2(ctypes.Structure):
    _fields_ = [
        ("fd", ctypes.c_int64),
        ("transid", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("unused", ctypes.c_uint64 * 4),
        ("name", ctypes.c_char * (BTRFS_SUBVOL_NAME_MAX + 1)),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_uint64), ("nsec", ctypes.c_uint32)]


class _SubvolInfo(ctypes.Structure):
    _fields_ = [
        ("treeid", ctypes.c_uint64),
        ("name", ctypes.c_char * (BTRFS_VOL_NAME_MAX + 1)),
        ("parent_id", ctypes.c_uint64),
        ("dirid", ctypes.c_uint64),
        ("generation", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("uuid", ctypes.c_uint8 * BTRFS_UUID_SIZE),
        ("parent_uuid", ctypes.c_uint8 * BTRFS_UUID_SIZE),
        ("received_uuid", ctypes.c_uint8 * BTRFS_UUID_SIZE),
        ("ctransid", ctypes.c_uint64),
        ("otransid", ctypes.c_uint64),
        ("stransid", ctypes.c_uint64),
        ("rtransid", ctypes.c_uint64),
        ("ctime", _Timespec),
        ("otime", _Timespec),
        ("stime", _Timespec),
        ("rtime", _Timespec),
        ("reserved", ctypes.c_uint64 * 8),
    ]


def _io(number: int) -> int:
    return (BTRFS_IOCTL_MAGIC << 8) | number


def _iow(number: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (BTRFS_IOCTL_MAGIC << 8) | number


def _ior(number: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (BTRFS_IOCTL_MAGIC << 8) | number


BTRFS_IOC_SYNC = _io(8)
FICLONE = _iow(9, ctypes.sizeof(ctypes.c_int))
"""linux/fs.h's FICLONE (btrfs's BTRFS_IOC_CLONE, number and all): reflink a whole file."""
CLONE_REFUSED = (errno.EINVAL, errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTTY)
"""FICLONE's answers when the two files cannot share extents (another file system, or
one of them ``nodatacow``, ``chattr +C``): the data must be copied instead."""


BTRFS_IOC_SNAP_CREATE_V2 = _iow(23, ctypes.sizeof(_VolArgsV2))
BTRFS_IOC_GET_SUBVOL_INFO = _ior(60, ctypes.sizeof(_SubvolInfo))


@dataclass(frozen=True)
class SubvolumeInfo:
    """What BTRFS_IOC_GET_SUBVOL_INFO tells of a subvolume (the fields pfs uses)."""

    uuid: str | None
    parent_uuid: str | None
    received_uuid: str | None
    generation: int
    readonly: bool


@contextmanager
def _opened(path: Path) -> Iterator[int]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        yield fd
    finally:
        os.close(fd)


def _call(what: str, path: Path, fd: int, request: int, arg: object) -> None:
    try:
        fcntl.ioctl(fd, request, arg)  # type: ignore[call-overload]
    except OSError as exc:
        hint = " (not a btrfs subvolume?)" if exc.errno in (errno.ENOTTY, errno.EINVAL) else ""
        raise StorageError(f"{what} {path} failed: {exc.strerror}{hint}") from exc


def snapshot(source: Path, target: Path, *, readonly: bool) -> None:
    """Snapshot the subvolume ``source`` as ``target`` (whose folder must exist)."""
    args = _VolArgsV2()
    args.flags = BTRFS_SUBVOL_RDONLY if readonly else 0
    name = os.fsencode(target.name)
    if len(name) > BTRFS_SUBVOL_NAME_MAX:
        raise StorageError(f"snapshot name {target.name!r} is too long")
    args.name = name
    with _opened(source) as source_fd, _opened(target.parent) as parent_fd:
        args.fd = source_fd
        _call("snapshot of", source, parent_fd, BTRFS_IOC_SNAP_CREATE_V2, args)


def subvolume_info(path: Path) -> SubvolumeInfo:
    """Generation, flags and UUIDs of the subvolume that holds ``path``."""
    raw = _SubvolInfo()
    with _opened(path) as fd:
        _call("subvolume info of", path, fd, BTRFS_IOC_GET_SUBVOL_INFO, raw)
    return SubvolumeInfo(
        uuid=_uuid(raw.uuid),
        parent_uuid=_uuid(raw.parent_uuid),
        received_uuid=_uuid(raw.received_uuid),
        generation=int(raw.generation),
        readonly=bool(raw.flags & BTRFS_ROOT_SUBVOL_RDONLY),
    )


def sync(path: Path) -> None:
    """Commit the current transaction of the file system that holds ``path``."""
    with _opened(path) as fd:
        _call("sync of", path, fd, BTRFS_IOC_SYNC, 0)


def clone_file(source: int, target: int) -> None:
    """Make the open file ``target`` hold exactly what the open file ``source`` holds by
    sharing its extents (a reflink: no data is copied; dirty pages of ``source`` are
    written out first). Both must be on one mount of one btrfs file system.

    Args:
        source: a regular file open for reading. target: a regular file open for
            writing, whose content is replaced.
    Raises:
        CloneRefused: the files cannot share extents. OSError: any other failure
            (ENOSPC: the pool is full).
    """
    try:
        fcntl.ioctl(target, FICLONE, source)
    except OSError as exc:
        if exc.errno in CLONE_REFUSED:
            raise CloneRefused(f"cannot share extents: {exc.strerror}") from exc
        raise


def _uuid(raw: ctypes.Array[ctypes.c_uint8]) -> str | None:
    data = bytes(raw)
    return None if data == bytes(BTRFS_UUID_SIZE) else str(uuid.UUID(bytes=data))


class _InoPathArgs(ctypes.Structure):
    _fields_ = [
        ("inum", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
        ("reserved", ctypes.c_uint64 * 4),
        ("fspath", ctypes.c_uint64),
    ]


BTRFS_IOC_INO_PATHS = 0xC0000000 | (ctypes.sizeof(_InoPathArgs) << 16) | (0x94 << 8) | 35
INO_PATHS_BUFFER = 64 * 1024
"""Bytes offered for the answer (the kernel fills at most 4 KiB of it)."""


def inode_paths(subvolume: Path, inode: int) -> list[str]:
    """Every name (hard link) of inode ``inode`` in ``subvolume``, relative to its root
    (bytes that are not UTF-8 kept as surrogate escapes).

    Raises:
        StorageError: the ioctl failed. TooManyNames: the names do not fit one answer
            (the caller finds them another way).
    """
    buffer = ctypes.create_string_buffer(INO_PATHS_BUFFER)
    args = _InoPathArgs(inum=inode, size=INO_PATHS_BUFFER, fspath=ctypes.addressof(buffer))
    with _opened(subvolume) as fd:
        _call("resolving the names of an inode in", subvolume, fd, BTRFS_IOC_INO_PATHS, args)
    raw = buffer.raw
    # struct btrfs_data_container: bytes_left, bytes_missing, elem_cnt, elem_missed
    # (u32 each), then elem_cnt u64 offsets (from the offsets' start) of C strings.
    missing, count, missed = (int.from_bytes(raw[i : i + 4], "little") for i in (4, 8, 12))
    if missing or missed:
        raise TooManyNames(f"inode {inode} has more names than one answer holds")
    start = 16
    paths = []
    for i in range(count):
        offset = int.from_bytes(raw[start + 8 * i : start + 8 * i + 8], "little")
        end = raw.index(b"\0", start + offset)
        paths.append(os.fsdecode(raw[start + offset : end]))
    return paths
