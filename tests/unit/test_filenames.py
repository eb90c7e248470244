"""The one escape for file names (pure): lossless for any bytes, printable for people,
the path limits of safepath.split, and its reading of links that change."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfs_volume import errors, safepath
from pfs_volume.errors import InvalidRequest
from pfs_volume.filenames import (
    from_bytes,
    from_wire,
    printable,
    query_value,
    to_bytes,
    to_wire,
)

NAMES = st.binary(min_size=1, max_size=64).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(NAMES)
def test_any_bytes_go_to_json_and_back(raw: bytes) -> None:
    name = from_bytes(raw)
    text, encoding = to_wire(name)
    text.encode("utf-8")  # always valid UTF-8, so valid JSON for any client
    assert to_bytes(from_wire(text, encoding)) == raw
    assert encoding == ("utf-8" if _is_utf8(raw) else "percent")


@given(NAMES)
def test_the_percent_form_and_any_url_encoding_come_back_from_a_query(raw: bytes) -> None:
    text, encoding = to_wire(from_bytes(raw))
    if encoding == "percent":
        assert to_bytes(query_value(f"x=1&path={text}".encode(), "path") or "") == raw
    encoded = quote_from_bytes(raw, safe="")
    assert to_bytes(query_value(f"path={encoded}&path=other".encode(), "path") or "") == raw


@given(NAMES)
def test_printed_names_hold_no_control_character(raw: bytes) -> None:
    shown = printable(from_bytes(raw))
    assert shown.isprintable()


def test_printed_examples() -> None:
    assert printable(from_bytes(b"caf\xe9")) == "caf\\xe9"
    assert printable("a\nb\\c\x01\u2028é") == "a\\nb\\\\c\\x01\\u2028é"
    assert to_wire(from_bytes(b"caf\xe9 100%")) == ("caf%E9%20100%25", "percent")
    assert to_wire("a\nb") == ("a\nb", "utf-8")
    assert query_value(b"path=a+b", "path") == "a b" and query_value(b"x=1", "path") is None
    with pytest.raises(ValueError, match="expected utf-8 or percent"):
        from_wire("x", "base64")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("", ()),
        ("/", ()),
        ("/a//b/./c/", ("a", "b", "c")),
        ("n" * 255, ("n" * 255,)),
        ("é" * 127, ("é" * 127,)),
        ("a/" * 2048, ("a",) * 2048),
    ],
)
def test_split_accepts(text: str, parts: tuple[str, ...]) -> None:
    assert safepath.split(text) == parts


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("n" * 256, "is 256 bytes long; a file or folder name is at most 255 bytes"),
        ("é" * 128, "is 256 bytes long"),
        ("a/" * 2048 + "b", "is 4097 bytes long; a path is at most 4096 bytes"),
        ("a/../b", "climbs out with '..'"),
        ("a\0b", "holds a NUL byte"),
    ],
)
def test_split_refuses(text: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says.replace("(", r"\(").replace(".", r"\.")):
        safepath.split(text)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_a_link_that_turned_into_a_folder_is_a_conflict(tmp_path: Path) -> None:
    """An lstat showed a link, then a container swapped a folder in: a 409 that says the
    tree changed, never an internal error (EINVAL from readlink)."""
    (tmp_path / "d").mkdir()
    folder = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(errors.Changed, match="/d changed while pfs read it"):
            safepath.read_link(folder, "d", ("d",))
        with pytest.raises(errors.Changed):
            safepath.read_link(folder, "gone", ("gone",))
        os.symlink("/etc", tmp_path / "l")
        assert safepath.read_link(folder, "l", ("l",)) == "/etc"
    finally:
        os.close(folder)
