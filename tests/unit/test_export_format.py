"""The export file's metadata, pure: commit order and what the import accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pfs_volume.errors import InvalidRequest
from pfs_volume.export_format import check_metadata, parents_first
from pfs_volume.meta import CommitRecord

T0 = datetime(2026, 11, 30, tzinfo=UTC)


def commit(cid: str, parent: str | None, minutes: int, *merged: str) -> CommitRecord:
    return CommitRecord(
        id=cid * 32,
        repo="r",
        branch="master",
        parent=parent * 32 if parent else None,
        created=T0 + timedelta(minutes=minutes),
        message="",
        origin="api",
        merge_parents=tuple(m * 32 for m in merged),
    )


def test_parents_first_follows_merged_in_parents_too() -> None:
    # d merges c, but d's clock said it was made before c (another node's clock).
    commits = [
        commit("a", None, 0),
        commit("b", "a", 1),
        commit("c", "a", 5),
        commit("d", "b", 2, "c"),
        commit("e", "d", 3),
    ]
    ordered = [c.id[0] for c in parents_first(reversed(commits))]
    assert ordered.index("c") < ordered.index("d") < ordered.index("e")
    assert sorted(ordered) == ["a", "b", "c", "d", "e"]


def test_parents_first_handles_a_history_deeper_than_the_stack() -> None:
    ids = [f"{n:032x}" for n in range(5000)]
    records = [
        CommitRecord(
            id=ids[n],
            repo="r",
            branch="master",
            parent=ids[n - 1] if n else None,
            created=T0 - timedelta(seconds=n),  # newest first by time: the worst order
            message="",
            origin="api",
        )
        for n in range(5000)
    ]
    assert [c.id for c in parents_first(records)] == ids


def metadata_line(**changes: object) -> bytes:
    metadata = {
        "format": 2,
        "repo": {"name": "r", "created": "2026-11-30T00:00:00Z", "description": ""},
        "branches": [],
        "commits": [],
        **changes,
    }
    return json.dumps(metadata).encode() + b"\n"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (metadata_line()[:-1], "cut short"),
        (b"[" * 100_000 + b"\n", "nested too deeply"),
        (b"[]\n", "not a JSON object"),
        (metadata_line(format=3), "this pfs reads formats 1, 2"),
        (metadata_line(format=True), "this pfs reads formats 1, 2"),
        (metadata_line(branches=[{"name": "b", "head": "f" * 32, "created": "x"}]), "no commit"),
    ],
)
def test_bad_metadata_is_refused(line: bytes, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        check_metadata(line)
