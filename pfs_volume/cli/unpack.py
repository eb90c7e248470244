"""Unpack the tar stream of ``pfs get`` into a local folder, safely.

A commit's symlinks are data: one pointing at ``/etc/passwd`` or at ``../../x`` is
written as that same symlink, never followed and never refused (tarfile's ``data``
filter refuses such links, and would stop a download half-way). What is refused is
anything that would write outside the destination: a member whose own name is absolute
or holds ``..``, a member under a name that is a symlink on disk (written earlier by this
archive, or already in the destination), a regular file over an existing symlink, and a
hard link to anything but a regular file already unpacked. FIFOs and device nodes are
not made (``pfs get`` copies data). Owners are not restored and set-id bits are dropped.
"""

from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pfs_volume.errors import PfsError
from pfs_volume.filenames import printable

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")
"""The longest path (with its NUL) this system's calls take: a member whose path under
the destination is longer cannot be written (tarfile writes by path)."""
_UNCACHED = 8
"""Levels a member's folders are looked up in the cache before checking from the top."""


@dataclass
class Unpacked:
    """What an unpack wrote and what it left out, with the reasons."""

    files: int = 0
    folders: int = 0
    symlinks: int = 0
    refused: list[str] = field(default_factory=list)
    """Members refused because they would write outside the destination."""
    skipped: list[str] = field(default_factory=list)
    """Special files (FIFOs, devices) not made."""


class _Filter:
    """A tarfile extraction filter that keeps links as links (see the module)."""

    def __init__(self, dest: Path, report: Unpacked) -> None:
        self.dest = dest
        self.report = report
        self.folders: dict[str, tuple[int, int]] = {}
        """Folders of the archive found on disk as folders (not links) already, with
        their device and inode: a member's folders are checked from the deepest of these
        down, not from ``dest`` (linear in depth, whatever the tree's depth), once that
        one is seen to be the very folder still (another user who can write to ``dest``
        may have swapped a folder above it for a link since)."""

    def __call__(self, member: tarfile.TarInfo, _dest: str) -> tarfile.TarInfo | None:
        name = member.name.rstrip("/")
        shown = printable(name)
        parts = name.split("/")
        if name.startswith("/") or not name or ".." in parts:
            return self._refuse(f"{shown}: its name leads outside the destination")
        length = len(os.fsencode(self.dest / name))
        if length >= PATH_MAX:
            raise PfsError(
                f"{shown[:60]}{'...' if len(shown) > 60 else ''} is too deep to write here: "
                f"its path would be {length} bytes, "
                f"and this system's limit is {PATH_MAX - 1}; get a folder deeper in the "
                "tree (pfs get REPO@REF PATH) to write what it holds under a shorter path; "
                "what was written so far stays"
            )
        self.folders.pop(name, None)  # whatever it is on disk now, it is rewritten
        through = self._link_on_the_way(parts[:-1])
        if through is not None:
            return self._refuse(f"{shown}: {printable(through)} is a symlink on disk")
        if member.ischr() or member.isblk() or member.isfifo():
            self.report.skipped.append(f"{shown}: a special file, not copied")
            return None
        here = self._lstat(parts)
        if here is not None and stat.S_ISLNK(here.st_mode) and not member.issym():
            return self._refuse(f"{shown}: a symlink is there on disk; not written through")
        if member.islnk():
            target = member.linkname.split("/")
            shape = self._lstat(target)
            if ".." in target or member.linkname.startswith("/") or shape is None:
                return self._refuse(f"{shown}: a hard link to something not unpacked here")
            if self._link_on_the_way(target[:-1]) or not stat.S_ISREG(shape.st_mode):
                return self._refuse(f"{shown}: a hard link to something not a regular file")
        self._count(member)
        # As the "data" filter does: no owners, no set-id bits (None: leave as made).
        attrs: dict[str, Any] = {"uid": None, "gid": None, "uname": None, "gname": None}
        attrs["mode"] = member.mode & 0o755 | (0o700 if member.isdir() else 0o600)
        if member.issym():
            attrs["mode"] = None
        return member.replace(deep=False, **attrs)

    def _refuse(self, why: str) -> tarfile.TarInfo | None:
        self.report.refused.append(why)
        return None

    def _count(self, member: tarfile.TarInfo) -> None:
        if member.isdir():
            self.report.folders += 1
        elif member.issym():
            self.report.symlinks += 1
        else:
            self.report.files += 1

    def _lstat(self, parts: list[str]) -> os.stat_result | None:
        try:
            return os.lstat(self.dest.joinpath(*parts))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _link_on_the_way(self, folders: list[str]) -> str | None:
        """The first of ``folders`` (a path under dest, name by name) that is a symlink
        on disk; None when none is. Those found as folders are remembered (members come
        folder first, and a member at a remembered name drops it)."""
        known = len(folders)
        while known > 0 and "/".join(folders[:known]) not in self.folders:
            known -= 1
            if len(folders) - known > _UNCACHED:
                known = 0  # not found near: check from the top (the path is not deep)
        if known > 0 and not self._same_folder(folders[:known]):
            self.folders.clear()  # something moved under the destination: from the top
            known = 0
        for depth in range(known + 1, len(folders) + 1):
            info = self._lstat(folders[:depth])
            if info is None:
                return None
            if stat.S_ISLNK(info.st_mode):
                return "/".join(folders[:depth])
            if stat.S_ISDIR(info.st_mode):
                self.folders["/".join(folders[:depth])] = (info.st_dev, info.st_ino)
        return None

    def _same_folder(self, folders: list[str]) -> bool:
        """Whether the remembered folder at ``folders`` is still that folder, reached
        through no link that leads elsewhere (its path resolves to its device and inode)."""
        info = self._lstat(folders)
        return (
            info is not None
            and stat.S_ISDIR(info.st_mode)
            and (info.st_dev, info.st_ino) == self.folders["/".join(folders)]
        )


def unpack(stream: IO[bytes], dest: Path) -> Unpacked:
    """Unpack an uncompressed tar stream into ``dest`` (made if missing).

    Raises:
        tarfile.TarError, OSError: the stream broke off or a write failed; what was
            written so far stays.
        PfsError: a member's path under ``dest`` is longer than the system takes.
    """
    dest.mkdir(parents=True, exist_ok=True)
    report = Unpacked()
    with tarfile.open(fileobj=stream, mode="r|", errorlevel=1) as tar:
        tar.extractall(dest, filter=_Filter(dest, report))
    return report
