"""Readable tables for the terminal."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart, headers in capitals; "" cells as "-"."""
    cells = [[h.upper() for h in headers]] + [
        ["-" if c is None or c == "" else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def short_id(commit_id: str | None) -> str:
    """The first 12 hex digits of a commit id (what tables show)."""
    return commit_id[:12] if commit_id else "-"


def when(created: str) -> str:
    """An RFC 3339 time shortened to seconds for tables."""
    return created[:19].replace("T", " ")
