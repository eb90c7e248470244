"""``pfs repo export`` and ``pfs repo import``: a repo with all its history as one file."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable

from pfs_volume.cli.argtypes import existing_file, file_to_write
from pfs_volume.cli.client import reading_answer
from pfs_volume.cli.commands import arg, command
from pfs_volume.cli.options import JSON, api_client
from pfs_volume.cli.output import note, show
from pfs_volume.errors import PfsError
from pfs_volume.filenames import printable

TYPE_CHECKING = False  # typing costs a short-lived CLI process (bench/cli_startup.py)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import IO

CHUNK = 1024 * 1024


@command("export")
@arg("name")
@arg(
    "-o",
    "--output",
    dest="dest",
    metavar="FILE",
    required=True,
    type=file_to_write,
    help="File to write.",
)
def repo_export(name: str, dest: Path) -> None:
    """Write a repo with all its history (every commit) to one file."""
    response = api_client().export_repo(name)
    written = 0
    show_progress = sys.stderr.isatty()
    try:
        out = open(dest, "wb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:  # a missing folder, no permission: said, not a traceback
        raise _cannot_write(name, dest, exc) from exc
    with out, reading_answer(f"the export of repo {name}"):
        for chunk in response.iter_content(CHUNK):
            try:
                out.write(chunk)
            except OSError as exc:  # a full disk
                raise _cannot_write(name, dest, exc) from exc
            written += len(chunk)
            if show_progress:
                note(f"\rexported {written / 1024**2:,.1f} MiB", end="")
    note(
        f"{chr(13) if show_progress else ''}exported repo {name} to {dest} "
        f"({written / 1024**2:,.1f} MiB)"
    )


def _cannot_write(name: str, dest: Path, exc: OSError) -> PfsError:
    """The error of an export file that cannot be written."""
    return PfsError(
        f"cannot write the export of repo {name} to {printable(str(dest))}: {exc.strerror or exc}"
    )


@command("import")
@arg("source", metavar="FILE", type=existing_file)
@arg("--as", dest="name", help="Import under this name (default: the exported one).")
@JSON
def repo_import(source: Path, name: str | None, as_json: bool) -> None:
    """Restore a repo from an export file, with identical commit ids and history."""
    size = source.stat().st_size
    progress = _Percent("importing", size, sys.stderr.isatty())
    with open(source, "rb") as raw:
        result = api_client().import_repo(_Progress(raw, progress.advance), name)
    progress.end()
    show(result, as_json, f"imported repo {result['name']}")


class _Percent:
    """Progress on stderr: on a terminal ``LABEL NN%`` rewritten in place as it
    grows, else the label once."""

    def __init__(self, label: str, total: int, on_terminal: bool) -> None:
        self.label, self.total, self.on_terminal = label, max(total, 1), on_terminal
        self.done, self.shown = 0, -1
        if not on_terminal:
            note(label)

    def advance(self, count: int) -> None:
        """Count ``count`` more bytes done."""
        self.done += count
        percent = min(100, self.done * 100 // self.total)
        if self.on_terminal and percent != self.shown:
            self.shown = percent
            note(f"\r{self.label} {percent:3d}%", end="")

    def end(self) -> None:
        """End the progress line."""
        if self.on_terminal:
            note("")


class _Progress(io.RawIOBase):
    """A file that reports how much has been read of it."""

    def __init__(self, raw: IO[bytes], advance: Callable[[int], None]) -> None:
        self.raw = raw
        self.advance = advance

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.advance(len(data))
        return data
