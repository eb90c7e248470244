"""``pfs get``'s tar unpacking (pure, on a temporary folder): links stay links, even
absolute or climbing ones; nothing is written outside the destination or through a link."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from pfs_volume.cli.unpack import unpack


def archive(*members: tuple[str, bytes | str | None, bytes]) -> io.BytesIO:
    """A tar of (name, type, data-or-link-target) members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind  # type: ignore[assignment]
            info.mode = 0o4755 if kind == tarfile.REGTYPE else 0o755
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = data.decode()
                tar.addfile(info)
            elif kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    buffer.seek(0)
    return buffer


def test_links_stay_links_wherever_they_point(tmp_path: Path) -> None:
    report = unpack(
        archive(
            ("t", tarfile.DIRTYPE, b""),
            ("t/abs", tarfile.SYMTYPE, b"/etc/passwd"),
            ("t/up", tarfile.SYMTYPE, b"../../../x"),
            ("t/f", tarfile.REGTYPE, b"data"),
            ("t/h", tarfile.LNKTYPE, b"t/f"),
            ("t/dev", tarfile.CHRTYPE, b""),
            ("t/fifo", tarfile.FIFOTYPE, b""),
        ),
        tmp_path / "out",
    )
    out = tmp_path / "out" / "t"
    assert os.readlink(out / "abs") == "/etc/passwd" and os.readlink(out / "up") == "../../../x"
    assert (out / "h").read_bytes() == b"data" and (out / "h").stat().st_nlink == 2
    assert not stat.S_IMODE((out / "f").stat().st_mode) & 0o6000, "set-id bits dropped"
    assert not (out / "dev").exists() and not (out / "fifo").exists()
    assert (report.files, report.symlinks, report.folders) == (2, 2, 1)
    assert report.refused == [] and len(report.skipped) == 2


def test_nothing_is_written_outside_or_through_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host")
    report = unpack(
        archive(
            ("../escape", tarfile.REGTYPE, b"x"),
            ("/abs", tarfile.REGTYPE, b"x"),
            ("l", tarfile.SYMTYPE, str(outside).encode()),
            ("l/through", tarfile.REGTYPE, b"x"),
            ("l", tarfile.REGTYPE, b"over the link"),
            ("hard-to-link", tarfile.LNKTYPE, b"l"),
            ("hard-out", tarfile.LNKTYPE, b"../outside/secret"),
        ),
        tmp_path / "out",
    )
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_text() == "host"
    assert os.listdir(tmp_path / "out") == ["l"] and (tmp_path / "out" / "l").is_symlink()
    assert len(report.refused) == 6, report.refused
    assert not (tmp_path / "escape").exists()
