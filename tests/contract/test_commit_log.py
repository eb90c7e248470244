"""Batched commit reads (``get_commits``, ``commit_links``) and the history walk built on
them (``Refs.log``), on both backends: the walk must answer exactly as the walk it
replaced, one ``get_commit`` per parent, did."""

from __future__ import annotations

import heapq
import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import cast

import pytest

from pfs_volume.errors import NotFound
from pfs_volume.meta import CommitIntent, CommitLinks, CommitRecord, EtcdStore, MetadataStore
from pfs_volume.names import parse_ref
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.refs import Refs
from pfs_volume.repos.snapshots import Snapshots
from tests.contract.test_metadata_store import (
    T0,
    at,
    branch_record,
    cid,
    commit_record,
    repo_record,
)


def reference_log(
    store: MetadataStore, repo: str, start: str, limit: int | None, first_parent: bool
) -> list[str]:
    """The walk as it was before the log index (one read per parent; here from one
    listing, to keep the test fast)."""
    every = {c.id: c for c in store.list_commits(repo)}
    head = every[start]
    out: list[str] = []
    seen = {head.id}
    queue = [(-head.created.timestamp(), head.id, head)]
    while queue and (limit is None or len(out) < limit):
        current = heapq.heappop(queue)[2]
        out.append(current.id)
        for parent_id in current.parents[:1] if first_parent else current.parents:
            if parent_id not in seen:
                seen.add(parent_id)
                parent = every[parent_id]
                heapq.heappush(queue, (-parent.created.timestamp(), parent.id, parent))
    return out


def refs_of(store: MetadataStore, tmp_path: Path) -> Refs:
    # log reads only the store: no pool or snapshots needed.
    return Refs(store, PoolLayout(tmp_path), cast(Snapshots, None))


def random_graph(seed: int, count: int) -> list[CommitRecord]:
    """Commits on three branches with merges between them, some made in the same
    microsecond and some (clock skew) older than their parents."""
    rng = random.Random(seed)
    heads: dict[str, str | None] = {"master": None, "a": None, "b": None}
    commits: list[CommitRecord] = []
    for n in range(count):
        branch = rng.choice(list(heads))
        parent = heads[branch] or (commits[-1].id if commits else None)
        others = [h for b, h in heads.items() if b != branch and h and h != parent]
        merged = (rng.choice(others),) if others and rng.random() < 0.2 else ()
        created = at(n // 2) if rng.random() < 0.8 else at(n // 2) - timedelta(seconds=5)
        commit = commit_record(n, parent, branch=branch, created=created, merge_parents=merged)
        commits.append(commit)
        heads[branch] = commit.id
    return commits


def test_get_commits_in_order_with_none_for_unknown(store: MetadataStore) -> None:
    commits = [commit_record(n) for n in range(200)]
    store.import_repo(repo_record(), [branch_record()], commits)
    asked = [cid(150), cid(9999), cid(3), *(c.id for c in commits[:140])]
    found = store.get_commits("photos", asked)
    assert found == [commits[150], None, commits[3], *commits[:140]]
    assert store.get_commits("photos", []) == []


def test_commit_links_page_in_log_order(store: MetadataStore) -> None:
    same = [commit_record(n, created=T0) for n in (5, 4, 6)]
    later = [commit_record(n, cid(n - 1), merge_parents=(cid(5),)) for n in range(10, 14)]
    store.import_repo(repo_record(), [branch_record()], same + later)
    everything = store.list_commits("photos")
    newest = everything[0]
    links = store.commit_links("photos", (newest.created, newest.id), 100)
    assert links == [CommitLinks.of(c) for c in everything[1:]]
    middle = everything[3]
    assert store.commit_links("photos", (middle.created, middle.id), 2) == [
        CommitLinks.of(c) for c in everything[4:6]
    ]
    assert store.commit_links("photos", (everything[-1].created, everything[-1].id), 5) == []


def test_commit_links_follow_finish_commit_and_delete_repo(store: MetadataStore) -> None:
    store.create_repo(repo_record(), branch_record())
    parent = None
    for n in range(1, 4):
        intent = CommitIntent(commit_record(n, parent))
        store.begin_commit(intent)
        store.finish_commit(intent, generation=n)
        parent = cid(n)
    links = store.commit_links("photos", (at(4), cid(0)), 10)
    assert [link.id for link in links] == [cid(3), cid(2), cid(1)]
    assert links[0].parents == (cid(2),) and links[-1].parents == ()
    store.delete_repo("photos")
    assert store.commit_links("photos", (at(4), cid(0)), 10) == []


def test_log_walk_answers_as_the_reference_walk(store: MetadataStore, tmp_path: Path) -> None:
    commits = random_graph(seed=14, count=300)
    branches = [branch_record(name=b) for b in ("master", "a", "b")]
    store.import_repo(repo_record(), branches, commits)
    refs = refs_of(store, tmp_path)
    rng = random.Random(1)
    starts = [commits[-1].id, *(rng.choice(commits).id for _ in range(3))]
    for start in starts:
        for limit in (1, 7, 50, None):
            for first_parent in (False, True):
                want = reference_log(store, "photos", start, limit, first_parent)
                got = refs.log("photos", parse_ref(start), limit, first_parent)
                assert [c.id for c in got] == want, (start, limit, first_parent)
                assert got == store.get_commits("photos", want)


def test_log_walk_reads_records_the_index_lacks(store: MetadataStore, tmp_path: Path) -> None:
    """Records from before the log index (etcd: a commit key with no ``log/`` entry) are
    walked by direct reads; on SQLite the same test just walks."""
    commits = random_graph(seed=3, count=60)
    store.import_repo(repo_record(), [branch_record(name=b) for b in ("master", "a", "b")], commits)
    if isinstance(store, EtcdStore):
        old = {c.id for c in commits[::3]}
        for kv in store.client.get_prefix(store.keys.log("photos"), keys_only=True):
            if kv.key.rsplit("/", 1)[-1] in old:
                store.client.delete(kv.key)
    refs = refs_of(store, tmp_path)
    for first_parent in (False, True):
        want = reference_log(store, "photos", commits[-1].id, 40, first_parent)
        got = refs.log("photos", parse_ref(commits[-1].id), 40, first_parent)
        assert [c.id for c in got] == want


def test_log_walk_reports_a_missing_parent(store: MetadataStore, tmp_path: Path) -> None:
    orphan = replace(commit_record(2, cid(1)), created=at(2))
    store.import_repo(repo_record(), [branch_record()], [orphan])
    refs = refs_of(store, tmp_path)
    with pytest.raises(NotFound, match="has no commit"):
        refs.log("photos", parse_ref(cid(2)), 5)


def test_get_repo_branch_reads_both(store: MetadataStore) -> None:
    store.create_repo(repo_record(), branch_record())
    assert store.get_repo_branch("photos", "master") == (
        store.get_repo("photos"),
        store.get_branch("photos", "master"),
    )
    assert store.get_repo_branch("photos", "nope") == (store.get_repo("photos"), None)
    assert store.get_repo_branch("nothing", "master") == (None, None)
