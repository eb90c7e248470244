"""The watch-driven repair's decision (``repair_events.RepairModel``) against a small
model of a cluster's records: what each change calls for on node "a"."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pfs_volume.cluster.repair_events import (
    CopyRepo,
    DropPruned,
    Fetch,
    PurgeDeleted,
    ReleaseIdleLocks,
    RepairModel,
    Replace,
    RepoPlacement,
    Unlist,
)
from pfs_volume.meta.etcd_watch import WatchEvent

_revision = [100]


def put(key: str, value: dict[str, object], version: int = 2) -> WatchEvent:
    _revision[0] += 1
    return WatchEvent(f"/pfs/{key}", json.dumps(value).encode(), False, _revision[0], version)


def delete(key: str) -> WatchEvent:
    _revision[0] += 1
    return WatchEvent(f"/pfs/{key}", b"", True, _revision[0], 0)


def model() -> RepairModel:
    made = RepairModel("/pfs", "a")
    made.reset(
        ["a", "b", "c"],
        [RepoPlacement("photos", 2, ("a", "b")), RepoPlacement("logs", 2, ("b", "c"))],
    )
    return made


def commit(holders: list[str], pruned: bool = False) -> dict[str, object]:
    return {"id": "c1", "holders": holders, "pruned": pruned}


def test_a_commit_placed_here_and_not_held_is_fetched() -> None:
    assert model().apply(put("commits/photos/c1", commit(["b"]))) == [Fetch("photos", "c1")]


def test_a_commit_held_here_or_placed_elsewhere_needs_nothing() -> None:
    m = model()
    assert m.apply(put("commits/photos/c1", commit(["a", "b"]))) == []
    assert m.apply(put("commits/logs/c1", commit(["b"]))) == []


def test_a_pruned_commit_is_unlisted_and_its_copy_dropped() -> None:
    m = model()
    assert m.apply(put("commits/photos/c1", commit(["a", "b"], pruned=True))) == [
        Unlist("photos", "c1"),
        DropPruned("photos"),
    ]
    assert m.apply(put("commits/logs/c1", commit(["b"], pruned=True))) == [DropPruned("logs")]


def test_lease_renewals_change_nothing_but_a_node_coming_or_going_replaces() -> None:
    m = model()
    assert m.apply(put("nodes/b", {"id": "b"}, version=7)) == []
    assert m.apply(delete("nodes/b")) == [Replace()]
    assert m.apply(delete("nodes/b")) == []
    # A node coming (back): the repos placed here are checked for commits it may hold
    # that this node failed to copy while it was away (att14).
    assert m.apply(put("nodes/b", {"id": "b"}, version=1)) == [Replace(), CopyRepo("photos")]
    assert m.live == {"a", "b", "c"}


def test_a_repo_newly_placed_here_is_copied_whole() -> None:
    m = model()
    assert m.apply(put("repos/logs", {"replicas": 2, "placement": ["a", "c"]})) == [
        CopyRepo("logs")
    ]
    # now placed here: its commits are fetched
    assert m.apply(put("commits/logs/c2", commit(["c"]))) == [Fetch("logs", "c2")]
    # a rewrite that keeps this node: nothing new to copy
    assert m.apply(put("repos/logs", {"replicas": 2, "placement": ["a", "c"]})) == []


def test_a_repo_placed_on_a_dead_node_is_replaced() -> None:
    m = model()
    m.apply(delete("nodes/c"))
    assert m.apply(put("repos/new", {"replicas": 2, "placement": ["b", "c"]})) == [Replace()]


def test_deletions_purge() -> None:
    m = model()
    assert m.apply(delete("repos/photos")) == [PurgeDeleted()]
    assert m.apply(put("gone/photos", {"by": "b"})) == [PurgeDeleted()]
    assert "photos" not in m.repos
    assert m.apply(put("commits/photos/c1", commit(["b"]))) == []


def test_only_this_nodes_locks_are_checked() -> None:
    m = model()
    assert m.apply(put("locks/photos/master", {"node": "a", "lease": 1})) == [ReleaseIdleLocks()]
    assert m.apply(put("locks/photos/master", {"node": "b", "lease": 1})) == []
    assert m.apply(delete("locks/photos/master")) == []


def test_other_keys_and_other_prefixes_are_ignored() -> None:
    m = model()
    assert m.apply(put("local/b/mounts/x", {"repo": "photos"})) == []
    assert m.apply(put("branches/photos/master", {"head": "c1"})) == []
    event = WatchEvent("/pfsother/commits/photos/c1", b"{}", False, 1, 1)
    assert m.apply(event) == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["nodes", "repos", "gone", "commits", "locks"]),
    rest=st.sampled_from(["photos", "photos/c1", "logs/c9", "a", "x/y/z", ""]),
    value=st.one_of(
        st.binary(max_size=20),
        st.dictionaries(
            st.sampled_from(["replicas", "placement", "holders", "pruned", "node"]), _JSON
        ).map(lambda v: json.dumps(v).encode()),
        _JSON.map(lambda v: json.dumps(v).encode()),
    ),
    deleted=st.booleans(),
)
def test_no_record_however_malformed_breaks_the_model(
    kind: str, rest: str, value: bytes, deleted: bool
) -> None:
    """A record of any shape (another version's, a hand-edited one) is read as far as it
    makes sense and never raises: repair's worker must outlive it."""
    m = model()
    work = m.apply(WatchEvent(f"/pfs/{kind}/{rest}", value, deleted, 200, 1))
    assert isinstance(work, list)
    assert all(isinstance(r.replicas, int) and r.replicas >= 1 for r in m.repos.values())
