"""``pfs get`` into a folder another local user can write to (their own download folder,
say, with root running the CLI): that user swaps a folder the download already made for a
symlink to a folder of the host, between two members of the tar.

``pfs get`` checks each member's folders on disk for a symlink before tarfile writes it
by path. Since deep trees came in it remembers the folders it found as folders and never
looks at them again, so after the swap every later member under that folder was written
through the link, into the host folder (before, the swap had to land between one
member's check and its write)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from pfs_volume.cli.unpack import unpack

PAD = 256 * 1024
"""Bytes of a member between the two: tarfile reads the stream in 10 KiB records, so the
swap lands while it is read, after ``t/a/first`` was written."""


def _archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("t", None), ("t/a", None), ("t/a/first", b"1"), ("t/pad", b"p" * PAD)):
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("t/a/evil")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    return buffer.getvalue()


class SwappingStream(io.RawIOBase):
    """The tar stream, read as ``pfs get`` reads it, while the other user swaps
    ``dest/t/a`` for a symlink to ``host`` once ``t/a/first`` is on disk."""

    def __init__(self, data: bytes, dest: Path, host: Path) -> None:
        self.data = io.BytesIO(data)
        self.dest = dest
        self.host = host
        self.swapped = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        folder = self.dest / "t" / "a"
        if not self.swapped and (folder / "first").exists():
            folder.rename(self.dest / "t" / "moved")
            folder.symlink_to(self.host)
            self.swapped = True
        chunk = self.data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_a_folder_swapped_for_a_link_mid_download_is_never_written_through(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    dest = tmp_path / "downloads"
    stream = SwappingStream(_archive(), dest, host)
    report = unpack(stream, dest)  # type: ignore[arg-type]
    assert stream.swapped
    assert os.listdir(host) == [], "pfs get wrote through a symlink into a host folder"
    assert any("t/a/evil" in why and "symlink" in why for why in report.refused), report
