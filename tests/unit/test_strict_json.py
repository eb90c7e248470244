"""The strict JSON parser behind every request body, pure."""

from __future__ import annotations

import io

import pytest

from pfs_volume.errors import InvalidRequest
from pfs_volume.strict_json import MAX_DEPTH, loads, read_body


def test_plain_json_and_surrogate_pairs_are_accepted() -> None:
    assert loads(b'{"a": ["\\ud83d\\ude00", 1, null]}', "x") == {"a": ["\U0001f600", 1, None]}
    depth = MAX_DEPTH
    assert loads("[" * depth + "]" * depth, "x") is not None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested too deeply"),
        ("[" * 100_000, "nested too deeply"),
        ('{"a": 1, "a": 2}', "the key 'a' twice"),
        ('{"a": NaN}', "NaN is not a JSON number"),
        ('{"\\udc00": 1}', "lone UTF-16 surrogate (\\udc00) at the top level"),
        ('{"a": [{"b": "\\ud800"}]}', "lone UTF-16 surrogate (\\ud800) at a[0].b"),
        ('"' + "a" * 2_000_000 + '"', "at most 1048576 bytes are accepted"),
        (b"\xff", "not valid JSON: it is not UTF-8"),
    ],
)
def test_hostile_text_is_refused(text: str | bytes, says: str) -> None:
    with pytest.raises(InvalidRequest, match=r"^the body ") as refused:
        loads(text, "the body")
    assert says in str(refused.value)


def test_read_body_reads_no_more_than_the_limit() -> None:
    assert read_body(io.BytesIO(b"abc"), None, "the body", limit=3) == b"abc"
    with pytest.raises(InvalidRequest, match="longer than 3 bytes"):
        read_body(io.BytesIO(b"abcd"), None, "the body", limit=3)
    with pytest.raises(InvalidRequest, match="is 10 bytes long; at most 3"):
        read_body(io.BytesIO(b""), 10, "the body", limit=3)
