"""``pfs repo export`` and ``pfs repo import``: a repo with all its history as one file."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import click

from pfs_volume.cli.client import reading_answer
from pfs_volume.cli.options import api_client, json_option
from pfs_volume.cli.output import show

CHUNK = 1024 * 1024


@click.command("export")
@click.argument("name")
@click.option(
    "-o",
    "--output",
    "dest",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write.",
)
def repo_export(name: str, dest: Path) -> None:
    """Write a repo with all its history (every commit) to one file."""
    response = api_client().export_repo(name)
    written = 0
    show_progress = sys.stderr.isatty()
    with open(dest, "wb") as out, reading_answer(f"the export of repo {name}"):
        for chunk in response.iter_content(CHUNK):
            out.write(chunk)
            written += len(chunk)
            if show_progress:
                click.echo(f"\rexported {written / 1024**2:,.1f} MiB", nl=False, err=True)
    click.echo(
        f"{chr(13) if show_progress else ''}exported repo {name} to {dest} "
        f"({written / 1024**2:,.1f} MiB)",
        err=True,
    )


@click.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "name", help="Import under this name (default: the exported one).")
@json_option
def repo_import(source: Path, name: str | None, as_json: bool) -> None:
    """Restore a repo from an export file, with identical commit ids and history."""
    size = source.stat().st_size
    with (
        open(source, "rb") as raw,
        click.progressbar(length=size, label="importing", file=sys.stderr) as bar,
    ):
        result = api_client().import_repo(_Progress(raw, bar.update), name)
    show(result, as_json, f"imported repo {result['name']}")


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
