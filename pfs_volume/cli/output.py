"""Printing API answers: as JSON with ``--json``, else as lines for people."""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON."""
    print(json.dumps(value, indent=2))


def show(value: Any, as_json: bool, text: str) -> None:
    """Print ``value`` as JSON with --json, else the line ``text``."""
    if as_json:
        print_json(value)
    else:
        print(text)


def print_commit(commit: dict[str, Any], as_json: bool) -> None:
    """Print a commit an answer made: the commit as JSON, else its id."""
    show(commit, as_json, f"committed {commit['id']}")


def shown(item: dict[str, Any], field: str) -> str:
    """A file name of an API answer, for people: control characters and bytes that
    are not UTF-8 escaped (never printed raw)."""
    # Imported here, by the verbs that list names: filenames imports urllib.parse.
    from pfs_volume.filenames import from_wire, printable

    return printable(from_wire(item[field], item.get(f"{field}_encoding") or "utf-8"))


def gone(result: dict[str, Any]) -> str:
    """The pipelines a forced delete took with it, as a line of its own."""
    names = result.get("pipelines_deleted") or []
    return f"\ndeleted pipeline(s) {', '.join(names)} with it" if names else ""


def warn(result: dict[str, Any]) -> None:
    """Print an answer's warnings on stderr (a missing image: pfs never pulls)."""
    for warning in result.get("warnings", ()):
        note(f"pfs: warning: {warning}")


def note(text: str, end: str = "\n") -> None:
    """Print ``text`` on stderr at once (progress and notes, never the answer)."""
    print(text, file=sys.stderr, end=end, flush=True)


def confirm(question: str) -> None:
    """Ask ``question`` on the terminal; go on only on yes.

    Raises:
        SystemExit: (status 1, after ``Aborted!``) any answer but y or yes.
    """
    try:
        answer = input(f"{question} [y/N]: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        note("Aborted!")
        sys.exit(1)
