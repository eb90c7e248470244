"""Reading a ``btrfs receive --dump`` listing into records (pure logic).

The dump's quirks, as btrfs-progs 6.2 prints them, are listed in ``pfs_volume/diff.py``,
which replays the records on a model of the tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pfs_volume.errors import DumpFormatError

HEADER_OPS = frozenset({"subvol", "snapshot"})
FIELDLESS_OPS = frozenset({"mkfile", "mkdir", "mkfifo", "mksock", "unlink", "rmdir"})
"""Operations the dump prints with a path and nothing after it."""

TITLE_WIDTH = 16
"""The dump prints the operation name left-aligned in 16 columns, then the path."""

_TITLE = re.compile(r"[a-z_]+")
_XATTR_END = re.compile(r" len=\d+$")
_NAMED_ESCAPES = {
    ord("a"): 0x07,
    ord("b"): 0x08,
    ord("e"): 0x1B,
    ord("f"): 0x0C,
    ord("n"): 0x0A,
    ord("r"): 0x0D,
    ord("t"): 0x09,
    ord("v"): 0x0B,
    ord(" "): 0x20,
    ord("\\"): 0x5C,
}
_OCTAL = frozenset(b"01234567")


@dataclass(frozen=True)
class DumpRecord:
    """One operation of the dump, paths unescaped and relative to the subvolume.

    Attributes:
        op: the operation (``mkfile``, ``rename``, ``utimes``, ...).
        path: the path it applies to; ``""`` is the subvolume's root.
        dest: for ``rename`` and ``link``, the other path (``rename``: the new name;
            ``link``: the existing file the new name points to); None otherwise.
    """

    op: str
    path: str
    dest: str | None = None


def unescape_path(text: str) -> str:
    """Undo btrfs-progs' C-style escaping of a path in the dump.

    Args:
        text: an escaped path as printed (plain ASCII).
    Returns:
        The path, bytes that are not UTF-8 kept as surrogate escapes.
    Raises:
        DumpFormatError: for a malformed escape.
    """
    if "\\" not in text:
        return text  # nothing escaped: the common case, kept fast
    raw = text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte != 0x5C:
            out.append(byte)
            i += 1
            continue
        following = raw[i + 1 : i + 2]
        digits = raw[i + 1 : i + 4]
        if following and following[0] in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[following[0]])
            i += 2
        elif len(digits) == 3 and all(d in _OCTAL for d in digits):
            out.append(int(digits, 8) & 0xFF)
            i += 4
        else:
            raise DumpFormatError(f"bad escape in dump path {text!r}")
    return out.decode("utf-8", "surrogateescape")


def _split_path(text: str) -> tuple[str, str]:
    """The escaped path at the start of ``text`` (it ends at an unescaped space), and
    the rest with the padding removed."""
    if "\\" not in text:
        path, _, rest = text.partition(" ")
        return path, rest.lstrip(" ")
    i = 0
    while i < len(text) and text[i] != " ":
        i += 2 if text[i] == "\\" else 1
    return text[:i], text[i:].lstrip(" ")


def parse_dump(lines: Iterable[str]) -> Iterator[DumpRecord]:
    """Turn the dump's lines into records, paths relative to the sent subvolume.

    Args:
        lines: the output of ``btrfs receive --dump`` for ONE subvolume, line by line
            (with or without the line ends).
    Yields:
        One record per operation; the header (``snapshot``/``subvol``) comes first,
        with path ``""``.
    Raises:
        DumpFormatError: for a line that is not an operation (other than the spill of
            an extended attribute's value), a path outside the subvolume, a second
            subvolume or no header.
    """
    prefix: str | None = None
    in_xattr_value = False
    for raw_line in lines:
        line = raw_line.rstrip("\n")
        if in_xattr_value:
            # The value spilled onto this line; the dump ends it with " len=N".
            in_xattr_value = not _XATTR_END.search(line)
            continue
        title = line[:TITLE_WIDTH].rstrip(" ")
        if _TITLE.fullmatch(title) is None or len(line) <= TITLE_WIDTH or line[TITLE_WIDTH] == " ":
            raise DumpFormatError(f"unexpected line in btrfs receive --dump: {line!r}")
        escaped, rest = _split_path(line[TITLE_WIDTH:])
        if title in HEADER_OPS:
            if prefix is not None:
                raise DumpFormatError(f"a second subvolume in one dump: {line!r}")
            prefix = escaped + "/"
            yield DumpRecord(title, "")
            continue
        if prefix is None:
            raise DumpFormatError(f"dump does not start with a subvolume: {line!r}")
        if not escaped.startswith(prefix):
            raise DumpFormatError(f"dump path outside the subvolume: {line!r}")
        if rest and title in FIELDLESS_OPS:
            raise DumpFormatError(f"unexpected text after {title}: {line!r}")
        path = unescape_path(escaped[len(prefix) :])
        dest = None
        if title in ("rename", "link"):
            if not rest.startswith("dest="):
                raise DumpFormatError(f"{title} without dest: {line!r}")
            target = rest[len("dest=") :]
            # rename's dest carries the prefix; link's is relative (6.2; strip either way).
            dest = unescape_path(target.removeprefix(prefix))
        in_xattr_value = title == "set_xattr" and not _XATTR_END.search(line)
        yield DumpRecord(title, path, dest)
    if prefix is None:
        raise DumpFormatError("empty btrfs receive --dump output")
