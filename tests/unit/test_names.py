"""The volume-name grammar, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.errors import InvalidName
from pfs_volume.names import (
    GRAMMAR,
    Hop,
    Ref,
    VolumeName,
    back,
    is_commit_prefix,
    parse_ref,
    parse_repo_branch,
    parse_repo_ref,
    parse_volume_name,
)

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
components = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(NAME_CHARS[:62]),
    st.text(alphabet=NAME_CHARS, max_size=62),
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pfs/photos", VolumeName("photos")),
        ("photos", VolumeName("photos")),
        ("pfs/photos/dev", VolumeName("photos", "dev")),
        ("pfs/photos@master", VolumeName("photos", None, Ref("master"))),
        ("pfs/photos@3f2a9c", VolumeName("photos", None, Ref("3f2a9c"))),
        ("pfs/photos/b@master~2", VolumeName("photos", "b", back("master", 2))),
        ("pfs/photos@abcdef~1~2", VolumeName("photos", None, back("abcdef", 3))),
        ("pfs/photos@master~0", VolumeName("photos", None, back("master", 0))),
        ("pfs/pfs", VolumeName("pfs")),
        ("pfs/pfs/x", VolumeName("pfs", "x")),
        ("a.b_c-d/e.f", VolumeName("a.b_c-d", "e.f")),
    ],
)
def test_valid_names_parse(name: str, expected: VolumeName) -> None:
    assert parse_volume_name(name, "pfs") == expected


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "empty"),
        ("pfs/../x", "must start with a letter or digit"),
        ("pfs/.", "must start with a letter or digit"),
        ("pfs/a@", "nothing follows '@'"),
        ("pfs/" + "a" * 300, "at most 255"),
        ("pfs/" + "a" * 64, "at most 63"),
        ("pfs/phötos", "'ö'"),
        ("pfs/a b", "' '"),
        ("pfs/a/b/c", "too many '/'"),
        ("pfs/a@b@c", "more than one '@'"),
        ("pfs/a@master~", "'~' must be followed by a number"),
        ("pfs/a@master~x", "'~' must be followed by a number"),
        ("pfs/a/", "branch name is empty"),
        ("pfs//a", "repo name is empty"),
        ("pfs/a@~1", "ref name is empty"),
        ("0123456789abcdef" * 4, "anonymous volume"),
    ],
)
def test_bad_names_say_what_is_wrong_and_show_the_grammar(name: str, says: str) -> None:
    with pytest.raises(InvalidName) as caught:
        parse_volume_name(name, "pfs")
    assert says in str(caught.value)
    assert GRAMMAR in str(caught.value)


def test_non_string_name_is_rejected() -> None:
    with pytest.raises(InvalidName, match="must be a string"):
        parse_volume_name(42, "pfs")  # type: ignore[arg-type]


@given(
    repo=components,
    branch=st.none() | components,
    ref=st.none() | components,
    walk=st.none() | st.lists(st.integers(min_value=-99, max_value=99), min_size=1, max_size=6),
)
def test_every_grammatical_name_round_trips(
    repo: str, branch: str | None, ref: str | None, walk: list[int] | None
) -> None:
    # A negative number stands for ^N, others for ~N; adjacent first-parent steps add up.
    hops: list[Hop] = []
    for n in walk or ():
        hop = Hop(-n, 1) if n < -1 else Hop(1, abs(n))
        if hops and hop.parent == 1 and hops[-1].parent == 1:
            hop = Hop(1, hops.pop().times + hop.times)
        hops.append(hop)
    at = Ref(ref, None if walk is None else tuple(hops)) if ref is not None else None
    parsed = VolumeName(repo, branch, at)
    assert parse_volume_name("pfs/" + str(parsed), "pfs") == parsed
    assert parse_volume_name(str(parsed), "pfs") == parsed


@given(st.text(max_size=80))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        parsed = parse_volume_name(text, "pfs")
    except InvalidName as exc:
        assert str(exc)
        return
    for part in (parsed.repo, parsed.branch, parsed.ref.base if parsed.ref else None):
        if part is not None:
            assert 1 <= len(part) <= 63
            assert part[0].isascii() and part[0].isalnum()
            assert all(ch in NAME_CHARS for ch in part)


@given(st.text(alphabet="0123456789abcdef", min_size=6, max_size=32))
def test_hex_of_6_to_32_digits_is_a_commit_prefix(text: str) -> None:
    assert is_commit_prefix(text)


@pytest.mark.parametrize("text", ["abcde", "ABCDEF", "abcdeg", "a" * 33, "master"])
def test_other_text_is_no_commit_prefix(text: str) -> None:
    assert not is_commit_prefix(text)


def test_cli_forms() -> None:
    assert parse_repo_branch("photos") == ("photos", None)
    assert parse_repo_branch("photos/dev") == ("photos", "dev")
    assert parse_repo_ref("photos@dev~3") == ("photos", back("dev", 3))
    assert str(parse_ref("dev~3")) == "dev~3"
    with pytest.raises(InvalidName):
        parse_repo_branch("photos@dev")
    with pytest.raises(InvalidName):
        parse_repo_ref("photos")


@pytest.mark.parametrize(
    ("text", "walk"),
    [
        ("m^", (Hop(1, 1),)),
        ("m^2", (Hop(2, 1),)),
        ("m^0", (Hop(1, 0),)),
        ("m^2~3", (Hop(2, 1), Hop(1, 3))),
        ("m~1^^", (Hop(1, 3),)),
        ("m^2^2", (Hop(2, 1), Hop(2, 1))),
    ],
)
def test_caret_names_a_parent(text: str, walk: tuple[Hop, ...]) -> None:
    assert parse_ref(text) == Ref("m", walk)


@pytest.mark.parametrize("text", ["m^x", "m~", "m^100", "m~-1", "m^2x", "^2", "m~1.5"])
def test_bad_parent_steps_are_refused_with_the_grammar(text: str) -> None:
    with pytest.raises(InvalidName, match="REF is a branch"):
        parse_ref(text)
