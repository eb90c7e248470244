"""A tree as an uncompressed tar stream, read through folder descriptors.

Every entry is found with ``fstatat`` from its open folder and never followed: a symlink
is archived as a symlink, a FIFO or device as what it is (never opened), a socket is left
out, and a regular file is opened only after ``safepath.open_regular`` checked it. A
regular file with several names is archived once, its later names as hard links to the
first. Names that are not UTF-8 keep their bytes (``surrogateescape``; tarfile writes
them in a PAX header marked ``hdrcharset=BINARY``).
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

from pfs_volume import errors, safepath

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024

_TYPES = {
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
    stat.S_IFCHR: tarfile.CHRTYPE,
    stat.S_IFBLK: tarfile.BLKTYPE,
    stat.S_IFREG: tarfile.REGTYPE,
}


class _Writer:
    """Adds entries of open folders to one tar archive."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.seen: dict[tuple[int, int], str] = {}

    def add(self, folder: int, name: str, arcname: str) -> None:
        """Add ``name`` of the open ``folder`` (and, for a folder, all it holds, in
        sorted order, each folder before what it holds). Iterative, so any depth, with
        at most ``safepath.MAX_OPEN_FOLDERS`` descriptors open (``FolderChain``)."""
        # Each item: a folder's arcname, and its names still to add (reversed).
        chain: safepath.FolderChain[tuple[str, list[str]]] = safepath.FolderChain()
        try:
            self._enter(chain, folder, name, arcname)
            while chain:
                where, pending = chain.items[-1]
                if not pending:
                    chain.pop()
                    continue
                child = pending.pop()
                self._enter(chain, chain.fd(), child, f"{where}/{child}")
        finally:
            chain.close()

    def _enter(
        self,
        chain: safepath.FolderChain[tuple[str, list[str]]],
        folder: int,
        name: str,
        arcname: str,
    ) -> None:
        opened = self._add_one(folder, name, arcname)
        if opened is not None:
            fd, where, pending = opened
            chain.push(fd, (where, pending))

    def _add_one(self, folder: int, name: str, arcname: str) -> tuple[int, str, list[str]] | None:
        """Add the one entry ``name``; for a folder, it opened (no link followed) with
        its names to add, sorted and reversed (popped from the end)."""
        info = safepath.lstat_at(folder, name)
        if info is None:
            return None
        member = self._member(folder, name, arcname, info)
        if member is None:
            return None
        if member.type == tarfile.REGTYPE:
            fd = safepath.open_regular(folder, name, arcname.split("/"))
            with os.fdopen(fd, "rb") as handle:
                self.tar.addfile(member, handle)
            return None
        self.tar.addfile(member)
        if member.type != tarfile.DIRTYPE:
            return None
        opened = safepath.open_child_folder(folder, name, arcname.split("/"))
        try:
            return opened, arcname, sorted(os.listdir(opened), reverse=True)
        except BaseException:
            os.close(opened)
            raise

    def _member(
        self, folder: int, name: str, arcname: str, info: os.stat_result
    ) -> tarfile.TarInfo | None:
        kind = _TYPES.get(stat.S_IFMT(info.st_mode))
        if kind is None:
            log.info("tar: %r is a socket; left out", arcname)
            return None
        member = tarfile.TarInfo(arcname)
        member.type = kind
        member.mode = stat.S_IMODE(info.st_mode)
        member.uid, member.gid = info.st_uid, info.st_gid
        member.mtime = int(info.st_mtime)
        if kind == tarfile.SYMTYPE:
            member.linkname = os.readlink(name, dir_fd=folder)
        elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            member.devmajor, member.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
        elif kind == tarfile.REGTYPE:
            key = (info.st_dev, info.st_ino)
            if info.st_nlink > 1 and key in self.seen:
                member.type, member.linkname = tarfile.LNKTYPE, self.seen[key]
            else:
                self.seen[key] = arcname
                member.size = info.st_size
        return member


def tar_stream(root: Path, parts: tuple[str, ...], name: str) -> Iterator[bytes]:
    """Tar the entry at ``parts`` under the folder ``root`` as ``name``; the archive in
    chunks, in bounded memory whatever its size. What ``root`` holds must not change
    while the chunks are read (a commit's read-only snapshot).

    Raises (at once, before any chunk):
        safepath's LinkInPath, NotAFolder, Missing: the path names nothing to tar.
    """
    with safepath.closing(safepath.open_parent(root, parts)) as parent:
        entry = parts[-1] if parts else "."
        if safepath.lstat_at(parent, entry) is None:
            raise errors.Missing(f"there is no {safepath.shown(parts)}", "/".join(parts))
    return _chunks(root, parts, name)


def _chunks(root: Path, parts: tuple[str, ...], name: str) -> Iterator[bytes]:
    """Tar on a thread into a pipe; yield what comes out."""
    parent = safepath.open_parent(root, parts)
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with (
                safepath.closing(parent),
                os.fdopen(write_fd, "wb") as pipe,
                tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                _Writer(tar).add(parent, parts[-1] if parts else ".", name)
        except BaseException as exc:  # handed to the reader below
            failure.append(exc)

    # One producer per tar being read, so bounded by the API's worker threads: it ends
    # when the reader closes the pipe (a client gone, or cut by the transport's limits).
    worker = threading.Thread(target=produce, name="pfs-tar", daemon=True)
    worker.start()
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(CHUNK):
            yield chunk
    worker.join()
    if failure and not isinstance(failure[0], BrokenPipeError):
        log.error("tar of /%s failed: %s", "/".join(parts), failure[0])
        raise failure[0]
