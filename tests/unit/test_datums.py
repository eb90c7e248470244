"""Datums: glob matching, cross and union, what a change affects and what a job reruns."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfs_volume.errors import InvalidRequest
from pfs_volume.pipelines.datums import Datum, affected, datums, dirty_datums, match, plan
from pfs_volume.pipelines.spec import (
    Combine,
    InputSpec,
    OutputSpec,
    PipelineSpec,
    Transform,
    fingerprint,
)

TREE = [
    "a",
    "a/1.csv",
    "a/2.txt",
    "a/sub",
    "a/sub/deep.csv",
    "b",
    "b/1.csv",
    "c.csv",
    ".hidden",
    "x y",
]


def pipeline(*inputs: InputSpec, combine: Combine = "cross") -> PipelineSpec:
    return PipelineSpec(
        name="p",
        inputs=inputs,
        combine=combine,
        transform=Transform("alpine", ("true",)),
        output=OutputSpec("p"),
    )


# -- match ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("/", [""]),
        ("/*", [".hidden", "a", "b", "c.csv", "x y"]),
        ("/*/*", ["a/1.csv", "a/2.txt", "a/sub", "b/1.csv"]),
        ("/*/*/*", ["a/sub/deep.csv"]),
        ("/*/*/*/*", []),
        ("/*.csv", ["c.csv"]),
        ("/*/*.csv", ["a/1.csv", "b/1.csv"]),
        ("/a/*", ["a/1.csv", "a/2.txt", "a/sub"]),
        ("/a", ["a"]),
        ("/A", []),
        ("/?", ["a", "b"]),
        ("/[ab]/1.*", ["a/1.csv", "b/1.csv"]),
        ("/[!a]", ["b"]),
        ("/x y", ["x y"]),
        ("/.*", [".hidden"]),
        ("/nothing", []),
    ],
)
def test_match(glob: str, expected: list[str]) -> None:
    assert match(glob, TREE) == expected


def test_the_whole_input_is_one_datum_even_when_empty() -> None:
    assert match("/", []) == [""]
    assert match("/*", []) == []


def test_folders_are_implied_by_paths_under_them() -> None:
    assert match("/*", ["a/b/c", "d"]) == ["a", "d"]
    assert match("/*/*", ["a/b/c"]) == ["a/b"]


def test_matches_are_sorted_and_unique() -> None:
    assert match("/*", ["z", "z/1", "z/2", "m", "a", "a"]) == ["a", "m", "z"]


@pytest.mark.parametrize("entry", ["..", ".", "", "../x", "a/../b", "./a", "/a", "a//b", "a/"])
def test_unclean_entries_never_match(entry: str) -> None:
    assert match("/*", [entry]) == []
    assert match("/*/*", [entry]) == []


def test_match_refuses_a_bad_glob() -> None:
    with pytest.raises(InvalidRequest, match=r"'\.\.' segment"):
        match("/..", ["a"])


# -- datums --------------------------------------------------------------------------------


def test_cross_is_every_combination_last_input_fastest() -> None:
    spec = pipeline(InputSpec("x", glob="/*"), InputSpec("y", glob="/*"))
    found = datums(spec, {"x": ["1", "2"], "y": ["a", "b", "c"]})
    assert [d.parts for d in found] == [
        (("x", "1"), ("y", "a")),
        (("x", "1"), ("y", "b")),
        (("x", "1"), ("y", "c")),
        (("x", "2"), ("y", "a")),
        (("x", "2"), ("y", "b")),
        (("x", "2"), ("y", "c")),
    ]


def test_cross_with_an_empty_input_has_no_datum() -> None:
    spec = pipeline(InputSpec("x", glob="/*"), InputSpec("y", glob="/*"))
    assert datums(spec, {"x": ["1", "2"], "y": []}) == []


def test_cross_with_a_whole_input() -> None:
    spec = pipeline(InputSpec("x", glob="/*"), InputSpec("model", glob="/"))
    found = datums(spec, {"x": ["1", "2"], "model": []})
    assert [d.parts for d in found] == [(("x", "1"), ("model", "")), (("x", "2"), ("model", ""))]


def test_union_is_each_input_alone_in_spec_order() -> None:
    spec = pipeline(InputSpec("y", glob="/*"), InputSpec("x", glob="/*"), combine="union")
    found = datums(spec, {"x": ["1"], "y": ["b", "a"]})
    assert [d.parts for d in found] == [(("y", "a"),), (("y", "b"),), (("x", "1"),)]


def test_a_single_input() -> None:
    spec = pipeline(InputSpec("x", glob="/*/*"))
    assert [d.parts for d in datums(spec, {"x": TREE})] == [
        (("x", "a/1.csv"),),
        (("x", "a/2.txt"),),
        (("x", "a/sub"),),
        (("x", "b/1.csv"),),
    ]


def test_datums_are_keyed_by_input_name_not_repo() -> None:
    spec = pipeline(InputSpec("r", glob="/*", name="old"), InputSpec("r", glob="/*", name="new"))
    found = datums(spec, {"old": ["1"], "new": ["2"]})
    assert [d.parts for d in found] == [(("old", "1"), ("new", "2"))]


@pytest.mark.parametrize(
    "entries",
    [{"x": ["1"]}, {"x": ["1"], "y": [], "z": []}, {"y": [], "z": []}],
)
def test_entries_must_name_exactly_the_inputs(entries: dict[str, list[str]]) -> None:
    spec = pipeline(InputSpec("x", glob="/*"), InputSpec("y", glob="/*"))
    with pytest.raises(ValueError, match="inputs"):
        datums(spec, entries)


def test_datum_ids() -> None:
    spec = pipeline(InputSpec("x", glob="/*"))
    first = datums(spec, {"x": ["1", "2"]})
    again = datums(spec, {"x": ["2", "1", "3"]})
    assert [d.id for d in first] == [d.id for d in again[:2]]
    assert len({d.id for d in again}) == 3
    assert all(len(d.id) == 64 and int(d.id, 16) >= 0 for d in again)
    assert first[0] == Datum((("x", "1"),), fingerprint(spec))
    assert first[0].id == Datum((("x", "1"),), fingerprint(spec)).id


def test_datum_ids_change_with_the_fingerprint() -> None:
    one = pipeline(InputSpec("x", glob="/*"))
    other = replace(one, transform=Transform("alpine", ("false",)))
    assert datums(one, {"x": ["1"]})[0].id != datums(other, {"x": ["1"]})[0].id


def test_datum_ids_tell_parts_apart_unambiguously() -> None:
    assert Datum((("a", "b/c"),), "f").id != Datum((("a/b", "c"),), "f").id
    assert Datum((("a", "b"), ("c", "")), "f").id != Datum((("a", "b"),), "f").id


# -- affected ------------------------------------------------------------------------------

DATUMS = ["a", "a/b", "a/bc", "b", "ab"]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ([], set()),
        (["a/b/c"], {"a", "a/b"}),
        (["a/b"], {"a", "a/b"}),
        (["a/bc/x"], {"a", "a/bc"}),
        (["a"], {"a", "a/b", "a/bc"}),
        (["ab"], {"ab"}),
        (["c"], set()),
        (["b/deep/er"], {"b"}),
        ([""], set(DATUMS)),
        (["."], set(DATUMS)),
        (["/a/b/"], {"a", "a/b"}),
        (["./b"], {"b"}),
        (["old", "b"], {"b"}),
    ],
)
def test_affected(changed: list[str], expected: set[str]) -> None:
    assert affected(DATUMS, changed) == expected


def test_the_whole_input_is_affected_by_any_change() -> None:
    assert affected([""], ["deep/down/file"]) == {""}
    assert affected([""], []) == set()


def test_a_rename_affects_both_ends() -> None:
    # "x" was renamed to "y": the caller passes both paths.
    assert affected(["x", "y", "z"], ["x", "y"]) == {"x", "y"}
    assert affected(["x/1", "y/1", "z/1"], ["x", "y"]) == {"x/1", "y/1"}


def test_affected_takes_iterators() -> None:
    assert affected(iter(["a", "b"]), iter(["a/1"])) == {"a"}


# -- dirty datums and the plan -------------------------------------------------------------


def test_dirty_datums_of_a_cross() -> None:
    spec = pipeline(InputSpec("x", glob="/*"), InputSpec("y", glob="/"))
    found = datums(spec, {"x": ["1", "2"], "y": []})
    assert dirty_datums(found, {"x": ["2/file"]}) == {found[1]}
    assert dirty_datums(found, {"y": ["anything"]}) == set(found)
    assert dirty_datums(found, {"x": [], "y": []}) == set()
    assert dirty_datums(found, {}) == set()


def test_plan_without_a_previous_job_runs_everything() -> None:
    found = datums(pipeline(InputSpec("x", glob="/*")), {"x": ["1", "2"]})
    assert plan(None, found, set()) == (found, {})


def test_plan_reuses_clean_known_datums() -> None:
    found = datums(pipeline(InputSpec("x", glob="/*")), {"x": ["1", "2", "3", "4"]})
    one, two, three, four = found
    previous = {one.id: "out-1", two.id: "out-2", three.id: "out-3", "gone": "out-x"}
    to_run, to_reuse = plan(previous, found, {two})
    assert to_run == [two, four]
    assert to_reuse == {one: "out-1", three: "out-3"}
    assert list(to_reuse) == [one, three]


def test_plan_ignores_dirty_datums_that_are_gone() -> None:
    spec = pipeline(InputSpec("x", glob="/*"))
    (one,) = datums(spec, {"x": ["1"]})
    (gone,) = datums(spec, {"x": ["9"]})
    assert plan({one.id: "o"}, [one], {gone}) == ([], {one: "o"})


def test_a_new_fingerprint_reuses_nothing() -> None:
    spec = pipeline(InputSpec("x", glob="/*"))
    changed = replace(spec, transform=Transform("alpine", ("false",)))
    previous = {d.id: "o" for d in datums(spec, {"x": ["1", "2"]})}
    current = datums(changed, {"x": ["1", "2"]})
    assert plan(previous, current, set()) == (current, {})


# -- properties ----------------------------------------------------------------------------

components = st.sampled_from(["a", "b", "c", "x.csv", ".h", "..", ".", "", "a b"])
paths = st.lists(components, min_size=1, max_size=4).map("/".join)
clean_components = st.sampled_from(["a", "b", "c", "x.csv", ".h", "a b"])
clean_paths = st.lists(clean_components, min_size=1, max_size=4).map("/".join)
globs = st.sampled_from(["/", "/*", "/*/*", "/*/*/*", "/a", "/*.csv", "/?", "/.*", "/[ab]/*"])


def _contains(datum: str, path: str) -> bool:
    """Whether a change at ``path`` lies in datum ``datum`` (at it or under it)."""
    return datum == "" or path == datum or path.startswith(datum + "/")


def _related(datum: str, path: str) -> bool:
    return _contains(datum, path) or path == "" or datum.startswith(path + "/")


input_entries = st.lists(st.lists(clean_paths, max_size=6), min_size=1, max_size=4)


def _spec_for(entries: list[list[str]], glob: str, combine: Combine) -> PipelineSpec:
    return pipeline(*(InputSpec(f"r{n}", glob=glob) for n in range(len(entries))), combine=combine)


def _by_name(entries: list[list[str]]) -> dict[str, Iterable[str]]:
    return {f"r{n}": paths for n, paths in enumerate(entries)}


@given(input_entries, globs)
def test_cross_size_is_the_product_of_sizes(entries: list[list[str]], glob: str) -> None:
    spec = _spec_for(entries, glob, "cross")
    sizes = [len(match(glob, paths)) for paths in entries]
    assert len(datums(spec, _by_name(entries))) == math.prod(sizes)


@given(input_entries, globs)
def test_union_size_is_the_sum_of_sizes(entries: list[list[str]], glob: str) -> None:
    spec = _spec_for(entries, glob, "union")
    sizes = [len(match(glob, paths)) for paths in entries]
    assert len(datums(spec, _by_name(entries))) == sum(sizes)


@given(input_entries, globs, st.sampled_from(["cross", "union"]))
def test_ids_are_stable_and_distinct(entries: list[list[str]], glob: str, combine: Combine) -> None:
    spec = _spec_for(entries, glob, combine)
    found = datums(spec, _by_name(entries))
    again = datums(spec, _by_name([list(reversed(paths)) for paths in entries]))
    assert [d.id for d in found] == [d.id for d in again]
    assert len({d.id for d in found}) == len(found)


@given(st.lists(paths, max_size=8), globs)
def test_a_glob_never_matches_dot_dot(entries: list[str], glob: str) -> None:
    for path in match(glob, entries):
        assert path == "" or all(name not in ("", ".", "..") for name in path.split("/"))


@given(st.lists(paths, max_size=8), globs)
def test_matches_have_the_globs_depth_and_come_from_entries(entries: list[str], glob: str) -> None:
    depth = 0 if glob == "/" else glob.count("/")
    for path in match(glob, entries):
        if depth:
            assert path.count("/") == depth - 1
            assert any(e == path or e.startswith(path + "/") for e in entries)


@given(st.lists(clean_paths, max_size=8), st.lists(clean_paths, max_size=4), globs)
def test_affected_covers_every_datum_holding_a_change(
    entries: list[str], changed: list[str], glob: str
) -> None:
    datum_paths = match(glob, entries)
    hit = affected(datum_paths, changed)
    assert hit <= set(datum_paths)
    assert {d for d in datum_paths for c in changed if _contains(d, c)} <= hit


@given(st.lists(clean_paths | st.just(""), max_size=8), st.lists(clean_paths, max_size=4))
def test_affected_is_exactly_the_related_datums(datum_paths: list[str], changed: list[str]) -> None:
    assert affected(datum_paths, changed) == {
        d for d in datum_paths for c in changed if _related(d, c)
    }


def test_input_entries_are_listed_without_following_links(tmp_path: Path) -> None:
    from pfs_volume.pipelines.runner import _entries

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "deep").write_text("x")
    (tmp_path / "a" / "f").write_text("x")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    (tmp_path / "link").symlink_to(outside)
    (tmp_path / "dangling").symlink_to("/nonexistent/hung/mount")
    assert _entries(tmp_path, 1) == ["a", "dangling", "link"]
    # A link is a datum path like any other, never a folder to look into.
    assert _entries(tmp_path, 2) == ["a", "a/b", "a/f", "dangling", "link"]
    assert _entries(tmp_path, 3) == ["a", "a/b", "a/b/deep", "a/f", "dangling", "link"]
    assert _entries(tmp_path, 0) == []
