"""How file names travel: bytes on disk, text inside pfs, an escape on the wire.

A file name is whatever bytes a container wrote (anything but ``/`` and NUL), not
necessarily UTF-8. Inside pfs a name is a ``str`` decoded from UTF-8 with
``surrogateescape``, so a byte that is not part of valid UTF-8 (``0xE9`` in Latin-1's
``caf\\xe9``) becomes a lone surrogate (``\\udce9``) and encodes back to the same byte.

On the wire (JSON and URLs) the one escape is **percent-encoding of the bytes**:

* In JSON, a name that is valid UTF-8 is given as it is, with ``"<field>_encoding":
  "utf-8"``. Any other name is given percent-encoded (every byte except ASCII letters,
  digits, ``_.-~`` and ``/`` as ``%XX``), with ``"<field>_encoding": "percent"``:
  ``b"caf\\xe9"`` is ``"name": "caf%E9", "name_encoding": "percent"``.
* In the ``path`` query parameter the server decodes the percent-encoded bytes as they
  are (not as UTF-8 with replacement), so the percent form from JSON can be put in a
  URL verbatim (``?path=caf%E9``), or decoded to bytes first and handed to an HTTP
  library that encodes them again.
* Printed for people (the CLI's text output, error messages), a name shows control
  characters, backslashes and undecodable bytes as Python-style escapes (``a\\nb``,
  ``caf\\xe9``), never raw.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote_from_bytes, unquote_to_bytes

UTF8 = "utf-8"
PERCENT = "percent"
ENCODINGS = (UTF8, PERCENT)
_SURROGATES = range(0xDC80, 0xDD00)
_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def to_bytes(name: str) -> bytes:
    """A name's bytes on disk (the inverse of ``from_bytes``)."""
    return name.encode("utf-8", "surrogateescape")


def from_bytes(raw: bytes) -> str:
    """A name as pfs holds it: UTF-8, other bytes as surrogate escapes (lossless)."""
    return raw.decode("utf-8", "surrogateescape")


def to_wire(name: str) -> tuple[str, str]:
    """``(text, encoding)`` for JSON: the name itself when it is valid UTF-8, else its
    bytes percent-encoded, with the encoding ``utf-8`` or ``percent``."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return quote_from_bytes(to_bytes(name), safe="/"), PERCENT
    return name, UTF8


def from_wire(text: str, encoding: str) -> str:
    """The name ``to_wire`` gave as ``(text, encoding)``.

    Raises:
        ValueError: for an encoding other than ``utf-8`` or ``percent``.
    """
    if encoding == UTF8:
        return text
    if encoding == PERCENT:
        return from_bytes(unquote_to_bytes(text))
    raise ValueError(f"unknown name encoding {encoding!r}; expected utf-8 or percent")


def query_value(query: bytes, key: str) -> str | None:
    """The first value of ``key`` in a raw URL query string, its percent-encoded bytes
    decoded losslessly (``from_bytes``), ``+`` as a space; None when absent."""
    text = query.decode("utf-8", "surrogateescape")
    for name, value in parse_qsl(
        text, keep_blank_values=True, encoding="utf-8", errors="surrogateescape"
    ):
        if name == key:
            return value
    return None


def printable(name: str) -> str:
    """A name for people: control characters, backslashes and bytes that are not
    UTF-8 escaped as in Python (``\\n``, ``\\\\``, ``\\x01``, ``\\xe9``); the rest as is."""
    out: list[str] = []
    for char in name:
        code = ord(char)
        if code in _SURROGATES:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in _NAMED:
            out.append(_NAMED[char])
        elif char.isprintable():
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)
