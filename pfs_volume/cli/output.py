"""Printing API answers: as JSON with ``--json``, else as lines for people."""

from __future__ import annotations

import json
from typing import Any

import click

from pfs_volume.filenames import from_wire, printable


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    click.echo(json.dumps(value, indent=2))


def show(value: Any, as_json: bool, text: str) -> None:
    """Print ``value`` as JSON with --json, else the line ``text``."""
    if as_json:
        print_json(value)
    else:
        click.echo(text)


def print_commit(commit: dict[str, Any], as_json: bool) -> None:
    """Print a commit an answer made: the commit as JSON, else its id."""
    show(commit, as_json, f"committed {commit['id']}")


def shown(item: dict[str, Any], field: str) -> str:
    """A file name of an API answer, for people: control characters and bytes that
    are not UTF-8 escaped (never printed raw)."""
    return printable(from_wire(item[field], item.get(f"{field}_encoding") or "utf-8"))


def gone(result: dict[str, Any]) -> str:
    """The pipelines a forced delete took with it, as a line of its own."""
    names = result.get("pipelines_deleted") or []
    return f"\ndeleted pipeline(s) {', '.join(names)} with it" if names else ""


def warn(result: dict[str, Any]) -> None:
    """Print an answer's warnings on stderr (a missing image: pfs never pulls)."""
    for warning in result.get("warnings", ()):
        click.echo(f"pfs: warning: {warning}", err=True)
