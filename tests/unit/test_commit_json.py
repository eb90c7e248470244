"""A commit's copies as the API shows them: live holders counted, dead ones apart,
pruned commits none."""

from __future__ import annotations

from datetime import UTC, datetime

from pfs_volume.api.serialize import commit_json
from pfs_volume.meta import CommitRecord

COMMIT = CommitRecord(
    id="a" * 32,
    repo="r",
    branch="master",
    parent=None,
    created=datetime(2026, 11, 30, tzinfo=UTC),
    message="",
    origin="api",
    holders=("node0", "node1", "node2"),
)


def copies(commit: CommitRecord, live: set[str] | None) -> tuple[int, list[str], list[str]]:
    body = commit_json(commit, live)
    return body["copies"], body["holders"], body["dead_holders"]


def test_only_live_holders_count() -> None:
    assert copies(COMMIT, {"node1", "node2", "node9"}) == (2, ["node1", "node2"], ["node0"])
    assert copies(COMMIT, set()) == (0, [], ["node0", "node1", "node2"])


def test_on_a_single_host_every_holder_is_this_node() -> None:
    assert copies(COMMIT, None) == (3, ["node0", "node1", "node2"], [])


def test_a_pruned_commit_has_no_copies_and_no_holders() -> None:
    pruned = CommitRecord(**{**COMMIT.__dict__, "pruned": True})
    assert copies(pruned, None) == (0, [], [])
    assert copies(pruned, {"node0"}) == (0, [], [])
