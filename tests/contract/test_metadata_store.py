"""The MetadataStore contract (pfs_volume/meta/store.py), held by every backend.

Each test runs against SQLite and against a real etcd; the few that hold for one backend
only are marked with the reason.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.errors import Conflict, InvalidName, NotFound
from pfs_volume.meta import (
    BranchRecord,
    CommitIntent,
    CommitRecord,
    EtcdClient,
    EtcdStore,
    Fence,
    MetadataStore,
    MountRecord,
    RepoRecord,
    SqliteStore,
    VolumeRecord,
)
from pfs_volume.meta.etcd_client import MAX_TXN_OPS

T0 = datetime(2026, 11, 22, 6, 30, 0, 123456, tzinfo=UTC)
FENCES_REASON = (
    "fences need cluster locks; SQLite has one host, where the local branch lock is the "
    "only writer, so it ignores them (see test_sqlite_ignores_fences)"
)
NODES_REASON = "node-local records only exist where several nodes share one store"


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def cid(n: int) -> str:
    """A commit id (32 hex digits) that sorts by ``n``."""
    return f"{n:08x}" + "ab" * 12


def repo_record(name: str = "photos", **fields: Any) -> RepoRecord:
    return replace(RepoRecord(name=name, created=T0, description="holiday pictures"), **fields)


def branch_record(repo: str = "photos", name: str = "master", **fields: Any) -> BranchRecord:
    return replace(BranchRecord(repo=repo, name=name, head=None, created=T0), **fields)


def commit_record(n: int, parent: str | None = None, **fields: Any) -> CommitRecord:
    base = CommitRecord(
        id=cid(n),
        repo="photos",
        branch="master",
        parent=parent,
        created=at(n),
        message=f"commit {n}",
        origin="test",
    )
    return replace(base, **fields)


def mount_record(mount_id: str, repo: str = "photos", seconds: int = 0) -> MountRecord:
    return MountRecord(
        id=mount_id,
        volume=f"{repo}/master",
        repo=repo,
        branch="master",
        commit=None,
        created=at(seconds),
    )


def with_repo(store: MetadataStore, name: str = "photos") -> None:
    store.create_repo(repo_record(name), branch_record(name))


def with_commit(store: MetadataStore, n: int = 1, parent: str | None = None) -> CommitRecord:
    """Commit ``n`` on photos/master through begin and finish, as the services do."""
    commit = commit_record(n, parent)
    intent = CommitIntent(commit)
    store.begin_commit(intent)
    store.finish_commit(intent, generation=100 + n)
    return commit


# repos


def test_create_repo_and_read_it_back(store: MetadataStore) -> None:
    repo = repo_record(replicas=2, placement=("node-b", "node-a"))
    store.create_repo(repo, branch_record())
    assert store.get_repo("photos") == repo
    assert store.list_repos() == [repo]
    assert store.get_branch("photos", "master") == branch_record()
    assert store.get_repo("nothing") is None


def test_times_come_back_as_aware_utc(store: MetadataStore) -> None:
    with_repo(store)
    created = store.get_repo("photos").created  # type: ignore[union-attr]
    assert created == T0 and created.utcoffset() == timedelta(0)


def test_list_repos_is_by_name(store: MetadataStore) -> None:
    for name in ("zebra", "apple", "mango"):
        with_repo(store, name)
    assert [r.name for r in store.list_repos()] == ["apple", "mango", "zebra"]


def test_create_repo_refuses_a_taken_name_and_changes_nothing(store: MetadataStore) -> None:
    with_repo(store)
    with pytest.raises(Conflict, match="exists already"):
        store.create_repo(repo_record(description="other"), branch_record(name="other"))
    assert store.get_repo("photos") == repo_record()
    assert [b.name for b in store.list_branches("photos")] == ["master"]


def test_import_repo_writes_branches_and_commits(store: MetadataStore) -> None:
    commits = [
        commit_record(1, holders=("node-a",)),
        commit_record(2, cid(1), pruned=True, holders=("node-a", "node-b")),
    ]
    branches = [branch_record(head=cid(2)), branch_record(name="dev", head=cid(1))]
    store.import_repo(repo_record(), branches, commits)
    assert store.get_repo("photos") == repo_record()
    assert store.list_branches("photos") == branches[::-1]
    assert store.list_commits("photos") == commits[::-1]


def test_import_repo_refuses_a_taken_name(store: MetadataStore) -> None:
    with_repo(store)
    with pytest.raises(Conflict):
        store.import_repo(repo_record(), [branch_record(head=cid(1))], [commit_record(1)])
    assert store.count_commits("photos") == 0
    assert store.get_branch("photos", "master") == branch_record()


def test_import_repo_larger_than_one_etcd_transaction(store: MetadataStore) -> None:
    count = 3 * MAX_TXN_OPS + 7
    commits = [commit_record(n, cid(n - 1) if n else None) for n in range(count)]
    branches = [branch_record(name=f"b{i:03d}", head=cid(i)) for i in range(MAX_TXN_OPS + 3)]
    store.import_repo(repo_record(), branches, commits)
    assert store.count_commits("photos") == count
    assert store.list_commits("photos")[0] == commits[-1]
    assert len(store.list_branches("photos")) == len(branches)
    with pytest.raises(Conflict):
        store.import_repo(repo_record(), branches, commits)


def test_delete_repo_drops_every_record_and_leaves_a_tombstone(store: MetadataStore) -> None:
    with_repo(store)
    with_repo(store, "kept")
    with_commit(store)
    store.create_branch(branch_record(name="dev"))
    store.add_mount(mount_record("m1"))
    store.add_mount(mount_record("m2", repo="kept"))
    store.add_volume(VolumeRecord("photos/dev", "photos", T0))
    store.add_volume(VolumeRecord("kept", "kept", T0))
    store.begin_commit(CommitIntent(commit_record(7, cid(1))))

    store.delete_repo("photos")

    assert store.get_repo("photos") is None
    assert store.list_branches("photos") == []
    assert store.list_commits("photos") == [] and store.count_commits("photos") == 0
    assert store.get_commit("photos", cid(1)) is None
    assert [m.id for m in store.list_mounts()] == ["m2"]
    assert [v.name for v in store.list_volumes()] == ["kept"]
    assert store.list_intents() == []
    assert store.list_deleted_repos() == ["photos"]
    assert [r.name for r in store.list_repos()] == ["kept"]


def test_a_tombstone_blocks_the_name_until_forgotten(store: MetadataStore) -> None:
    with_repo(store)
    store.delete_repo("photos")
    with pytest.raises(Conflict, match="still being deleted"):
        with_repo(store)
    store.forget_deleted_repo("photos")
    store.forget_deleted_repo("photos")  # no error when unknown
    assert store.list_deleted_repos() == []
    with_repo(store)
    assert store.count_commits("photos") == 0


def test_repo_deleted_is_evidence_not_absence(store: MetadataStore) -> None:
    assert not store.repo_deleted("photos"), "a name never used was not deleted"
    with_repo(store)
    assert not store.repo_deleted("photos")
    store.delete_repo("photos")
    assert store.repo_deleted("photos")
    store.forget_deleted_repo("photos")
    with_repo(store)
    assert not store.repo_deleted("photos"), "created again"


# branches


def test_branches(store: MetadataStore) -> None:
    with_repo(store)
    dev = branch_record(name="dev", head=None, created=at(5))
    store.create_branch(dev)
    assert store.get_branch("photos", "dev") == dev
    assert [b.name for b in store.list_branches("photos")] == ["dev", "master"]
    with pytest.raises(Conflict, match="exists already"):
        store.create_branch(dev)
    store.delete_branch("photos", "dev")
    store.delete_branch("photos", "dev")  # no error when unknown
    assert store.get_branch("photos", "dev") is None
    assert store.list_branches("nothing") == []


def test_create_branch_in_an_unknown_repo(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        store.create_branch(branch_record(repo="nothing"))


def test_move_head_swaps_and_forgets_the_working_copy_state(store: MetadataStore) -> None:
    with_repo(store)
    with_commit(store, 1)
    with_commit(store, 2, cid(1))
    store.set_clean_generation("photos", "master", 40, cid(2))
    store.move_head("photos", "master", cid(2), cid(1))
    branch = store.get_branch("photos", "master")
    assert branch is not None and branch.head == cid(1)
    assert branch.clean_generation is None and branch.working_base is None


def test_move_head_refuses_a_stale_expectation(store: MetadataStore) -> None:
    with_repo(store)
    with_commit(store, 1)
    store.set_clean_generation("photos", "master", 40, cid(1))
    before = store.get_branch("photos", "master")
    with pytest.raises(Conflict, match=f"its head is {cid(1)}"):
        store.move_head("photos", "master", None, cid(9))
    assert store.get_branch("photos", "master") == before


def test_move_head_of_an_unknown_branch(store: MetadataStore) -> None:
    with_repo(store)
    with pytest.raises(NotFound):
        store.move_head("photos", "nothing", None, cid(1))
    assert store.get_branch("photos", "nothing") is None


def test_concurrent_head_moves_from_one_head_let_exactly_one_win(store: MetadataStore) -> None:
    with_repo(store)
    wins: list[int] = []
    losses: list[int] = []
    start = threading.Barrier(8)

    def move(n: int) -> None:
        start.wait()
        try:
            store.move_head("photos", "master", None, cid(n))
            wins.append(n)
        except Conflict:
            losses.append(n)

    threads = [threading.Thread(target=move, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1 and len(losses) == 7
    assert store.get_branch("photos", "master").head == cid(wins[0])  # type: ignore[union-attr]


def test_clean_generation_and_working_base(store: MetadataStore) -> None:
    with_repo(store)
    store.set_clean_generation("photos", "master", 7, None)
    branch = store.get_branch("photos", "master")
    assert branch is not None and (branch.clean_generation, branch.working_base) == (7, None)
    with_commit(store, 1)
    branch = store.get_branch("photos", "master")
    assert branch is not None and (branch.clean_generation, branch.working_base) == (101, cid(1))
    store.set_clean_generation("photos", "master", 205, cid(1))
    assert store.list_branches("photos")[0].clean_generation == 205
    with pytest.raises(NotFound):
        store.set_clean_generation("photos", "nothing", 1, None)


# fences


@pytest.mark.backend("etcd", reason=FENCES_REASON)
def test_a_fenced_head_move_needs_the_lock_key_as_it_was_taken(
    store: MetadataStore, etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    with_repo(store)
    lock_key = f"{etcd_prefix}/locks/photos/master"
    lease = etcd_client.grant_lease(10)
    etcd_client.put(lock_key, "node-a", lease)
    taken = etcd_client.get(lock_key)
    assert taken is not None
    fence = Fence(lock_key, taken.create_revision)
    store.move_head("photos", "master", None, cid(1), fence=fence)

    # The lock expires and another node takes it: the same key, a new create revision.
    etcd_client.revoke_lease(lease)
    etcd_client.put(lock_key, "node-b")
    with pytest.raises(Conflict, match=r"no longer held by this node.*fenced off"):
        store.move_head("photos", "master", cid(1), cid(2), fence=fence)
    assert store.get_branch("photos", "master").head == cid(1)  # type: ignore[union-attr]

    etcd_client.delete(lock_key)
    with pytest.raises(Conflict, match="fenced off"):
        store.move_head("photos", "master", cid(1), cid(2), fence=fence)
    assert store.get_branch("photos", "master").head == cid(1)  # type: ignore[union-attr]


@pytest.mark.backend("etcd", reason=FENCES_REASON)
def test_a_fenced_off_commit_changes_nothing(
    store: MetadataStore, etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    with_repo(store)
    store.add_mount(mount_record("m1"))
    intent = CommitIntent(commit_record(1), mount_id="m1")
    store.begin_commit(intent)
    lock_key = f"{etcd_prefix}/locks/photos/master"
    etcd_client.put(lock_key, "node-a")
    stale = Fence(lock_key, etcd_client.get(lock_key).create_revision - 1)  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="fenced off"):
        store.finish_commit(intent, 5, fence=stale)
    assert store.get_commit("photos", cid(1)) is None
    assert store.get_branch("photos", "master") == branch_record()
    assert store.list_intents() == [intent]
    assert store.get_mount("m1") == mount_record("m1")

    fresh = Fence(lock_key, etcd_client.get(lock_key).create_revision)  # type: ignore[union-attr]
    store.finish_commit(intent, 5, fence=fresh)
    assert store.get_branch("photos", "master").head == cid(1)  # type: ignore[union-attr]


@pytest.mark.backend("sqlite", reason="the other backends honour fences")
def test_sqlite_ignores_fences(store: MetadataStore) -> None:
    with_repo(store)
    store.move_head("photos", "master", None, cid(1), fence=Fence("/no/such/lock", 42))
    assert store.get_branch("photos", "master").head == cid(1)  # type: ignore[union-attr]


# commits


def test_finish_commit_lands_everything_at_once(store: MetadataStore) -> None:
    with_repo(store)
    store.add_mount(mount_record("m1"))
    store.add_mount(mount_record("m2", seconds=1))
    commit = commit_record(1, holders=("node-a",))
    intent = CommitIntent(commit, mount_id="m1")
    store.begin_commit(intent)
    assert store.list_intents() == [intent]
    assert store.get_commit("photos", commit.id) is None  # not visible yet

    store.finish_commit(intent, generation=77)

    assert store.get_commit("photos", commit.id) == commit
    branch = store.get_branch("photos", "master")
    assert branch is not None
    assert (branch.head, branch.clean_generation, branch.working_base) == (commit.id, 77, commit.id)
    assert store.list_intents() == []
    assert [m.id for m in store.list_mounts()] == ["m2"]


def test_a_failing_finish_commit_changes_nothing(store: MetadataStore) -> None:
    with_repo(store)
    store.add_mount(mount_record("m1"))
    store.set_clean_generation("photos", "master", 9, None)
    intent = CommitIntent(commit_record(2, cid(1)), mount_id="m1")  # expects head 1: it is None
    store.begin_commit(intent)
    before = store.get_branch("photos", "master")
    with pytest.raises(Conflict, match="moved"):
        store.finish_commit(intent, generation=10)
    assert store.get_branch("photos", "master") == before
    assert store.get_commit("photos", cid(2)) is None
    assert store.list_intents() == [intent]
    assert store.get_mount("m1") == mount_record("m1")
    store.abandon_commit(intent)
    assert store.list_intents() == []


def test_finish_commit_on_a_deleted_branch(store: MetadataStore) -> None:
    with_repo(store)
    store.create_branch(branch_record(name="dev"))
    intent = CommitIntent(commit_record(1, branch="dev"))
    store.begin_commit(intent)
    store.delete_branch("photos", "dev")
    with pytest.raises(NotFound):
        store.finish_commit(intent, generation=1)
    assert store.get_commit("photos", cid(1)) is None


def test_commit_queries(store: MetadataStore) -> None:
    with_repo(store)
    commits = [with_commit(store, 1)]
    for n in range(2, 6):
        commits.append(with_commit(store, n, cid(n - 1)))
    assert store.count_commits("photos") == 5
    assert store.get_commit("photos", cid(3)) == commits[2]
    assert store.get_commit("photos", cid(9)) is None
    assert store.list_commits("photos") == commits[::-1]
    assert store.find_commit_ids("photos", cid(3)[:10]) == [cid(3)]
    assert store.find_commit_ids("photos", "0000000") == [cid(n) for n in range(1, 6)]
    assert store.find_commit_ids("photos", "ffffff") == []
    assert store.count_commits("nothing") == 0


def test_find_commit_ids_shows_at_most_a_few(store: MetadataStore) -> None:
    store.import_repo(repo_record(), [branch_record()], [commit_record(n) for n in range(30)])
    found = store.find_commit_ids("photos", "000000")
    assert 2 <= len(found) <= 10 and found == sorted(found)


def test_list_commits_breaks_ties_by_id(store: MetadataStore) -> None:
    same = [commit_record(n, created=T0) for n in (3, 1, 2)]
    store.import_repo(repo_record(), [branch_record()], same)
    assert [c.id for c in store.list_commits("photos")] == [cid(1), cid(2), cid(3)]


def test_mark_pruned(store: MetadataStore) -> None:
    many = [commit_record(n) for n in range(MAX_TXN_OPS + 10)]
    store.import_repo(repo_record(), [branch_record()], many)
    store.mark_pruned("photos", [c.id for c in many[1:]] + [cid(99999)])
    pruned = {c.id for c in store.list_commits("photos") if c.pruned}
    assert pruned == {c.id for c in many[1:]}
    assert store.get_commit("photos", cid(0)).pruned is False  # type: ignore[union-attr]


def test_holders_are_sorted_and_changes_idempotent(store: MetadataStore) -> None:
    with_repo(store)
    with_commit(store, 1)
    store.add_holder("photos", cid(1), "node-c")
    store.add_holder("photos", cid(1), "node-a")
    store.add_holder("photos", cid(1), "node-c")
    assert store.get_commit("photos", cid(1)).holders == ("node-a", "node-c")  # type: ignore[union-attr]
    store.remove_holder("photos", cid(1), "node-c")
    store.remove_holder("photos", cid(1), "node-c")
    assert store.get_commit("photos", cid(1)).holders == ("node-a",)  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        store.add_holder("photos", cid(9), "node-a")
    with pytest.raises(NotFound):
        store.remove_holder("photos", cid(9), "node-a")


def test_concurrent_holders_are_all_kept(store: MetadataStore) -> None:
    with_repo(store)
    with_commit(store, 1)
    nodes = [f"node-{i}" for i in range(8)]
    start = threading.Barrier(len(nodes))

    def add(node: str) -> None:
        start.wait()
        store.add_holder("photos", cid(1), node)

    threads = [threading.Thread(target=add, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get_commit("photos", cid(1)).holders == tuple(nodes)  # type: ignore[union-attr]


def test_placement_compare_and_swap(store: MetadataStore) -> None:
    with_repo(store)
    assert store.set_placement("photos", (), ("node-a", "node-b")) is True
    assert store.get_repo("photos").placement == ("node-a", "node-b")  # type: ignore[union-attr]
    assert store.set_placement("photos", (), ("node-c",)) is False
    assert store.get_repo("photos").placement == ("node-a", "node-b")  # type: ignore[union-attr]
    assert store.set_placement("photos", ("node-a", "node-b"), ("node-b", "node-c")) is True
    repo = store.get_repo("photos")
    assert repo == repo_record(placement=("node-b", "node-c"))
    with pytest.raises(NotFound):
        store.set_placement("nothing", (), ("node-a",))


# mounts and volume names


def test_mounts(store: MetadataStore) -> None:
    with_repo(store)
    with_repo(store, "other")
    first = mount_record("m1", seconds=2)
    assert store.add_mount(first) == first
    again = replace(first, volume="photos@abc", created=at(9))
    assert store.add_mount(again) == first  # Docker may repeat a Mount ID
    store.add_mount(mount_record("m0", seconds=5))
    store.add_mount(mount_record("m2", repo="other", seconds=1))
    assert store.get_mount("m1") == first
    assert store.get_mount("nothing") is None
    assert [m.id for m in store.list_mounts()] == ["m2", "m1", "m0"]
    assert [m.id for m in store.list_mounts("photos")] == ["m1", "m0"]
    store.delete_mount("m1")
    store.delete_mount("m1")  # no error when unknown
    assert [m.id for m in store.list_mounts("photos")] == ["m0"]


def test_mount_uses_are_counted(store: MetadataStore) -> None:
    """Docker mounts a running container's volume again with the same ID (docker cp):
    each Mount counts a use, each Unmount but the last takes one away."""
    with_repo(store)
    store.add_mount(mount_record("m1"))
    assert store.get_mount("m1").uses == 1  # type: ignore[union-attr]
    assert store.unuse_mount("m1") is False  # used once: its Unmount releases it
    assert store.use_mount("m1") == replace(mount_record("m1"), uses=2)
    assert store.use_mount("m1").uses == 3  # type: ignore[union-attr]
    assert store.unuse_mount("m1") is True
    assert store.unuse_mount("m1") is True
    assert store.get_mount("m1") == mount_record("m1")
    assert store.unuse_mount("m1") is False
    assert store.use_mount("nothing") is None and store.unuse_mount("nothing") is False
    assert store.get_mount("nothing") is None


def test_volume_names(store: MetadataStore) -> None:
    names = ["pfs/photos@master", "photos", "photos/dev", "pfs/photos/b@" + cid(1)[:8]]
    for name in names:
        store.add_volume(VolumeRecord(name, "photos", T0))
    store.add_volume(VolumeRecord("photos", "other", at(5)))  # known already: kept as it was
    assert store.get_volume("photos") == VolumeRecord("photos", "photos", T0)
    assert store.get_volume("nothing") is None
    assert [v.name for v in store.list_volumes()] == sorted(names)
    store.delete_volume("photos/dev")
    store.delete_volume("photos/dev")  # no error when unknown
    assert store.get_volume("photos/dev") is None
    assert len(store.list_volumes()) == 3


# nodes


@pytest.mark.backend("etcd", reason=NODES_REASON)
def test_node_local_records_are_separate_and_shared_records_shared(
    make_store: Callable[[str], MetadataStore],
) -> None:
    a, b = make_store("node-a"), make_store("node-b")
    with_repo(a)
    assert b.get_repo("photos") == repo_record()
    with_commit(a, 1)
    assert b.get_commit("photos", cid(1)) == commit_record(1)

    # Node a's working copy state is a's: b sees the head but no working copy state.
    a_master = a.get_branch("photos", "master")
    b_master = b.get_branch("photos", "master")
    assert a_master is not None and b_master is not None
    assert (a_master.clean_generation, a_master.working_base) == (101, cid(1))
    assert (b_master.head, b_master.clean_generation, b_master.working_base) == (cid(1), None, None)
    b.set_clean_generation("photos", "master", 5, None)
    assert a.get_branch("photos", "master") == a_master
    assert b.list_branches("photos")[0].working_base is None
    assert b.list_branches("photos")[0].clean_generation == 5

    a.add_mount(mount_record("m1"))
    a.add_volume(VolumeRecord("photos", "photos", T0))
    a.begin_commit(CommitIntent(commit_record(2, cid(1))))
    assert b.list_mounts() == [] and b.get_mount("m1") is None
    assert b.list_volumes() == [] and b.get_volume("photos") is None
    assert b.list_intents() == []

    # Node b moves the head: a's working copy state says what a's disk holds (base 1).
    b.move_head("photos", "master", cid(1), cid(2))
    a_master = a.get_branch("photos", "master")
    assert a_master is not None and (a_master.head, a_master.working_base) == (cid(2), cid(1))

    b.delete_repo("photos")
    assert a.get_repo("photos") is None and a.list_commits("photos") == []
    assert b.list_deleted_repos() == ["photos"] and a.list_deleted_repos() == []
    assert [m.id for m in a.list_mounts()] == ["m1"]


@pytest.mark.backend("etcd", reason="only etcd imports in several transactions")
def test_leftovers_of_an_interrupted_import_are_swept(
    store: MetadataStore, etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    # What a crashed import leaves: commit and branch records and no repo record.
    etcd_client.put(f"{etcd_prefix}/commits/photos/{cid(1)}", "{}")
    etcd_client.put(f"{etcd_prefix}/branches/photos/old", "{}")
    with_repo(store)
    assert store.list_commits("photos") == []
    assert [b.name for b in store.list_branches("photos")] == ["master"]


@pytest.mark.backend("etcd", reason="only etcd imports in several transactions")
def test_an_import_in_progress_holds_the_name(
    store: MetadataStore, etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    lease = etcd_client.grant_lease(10)
    etcd_client.put(f"{etcd_prefix}/imports/photos", '{"node":"node-b"}', lease)
    with pytest.raises(Conflict, match=r"being imported.*node-b"):
        with_repo(store)
    etcd_client.revoke_lease(lease)  # as when the importer died and its lease expired
    with_repo(store)


@pytest.mark.backend("etcd", reason="only EtcdStore builds keys from names")
def test_names_that_would_break_the_key_layout_are_refused(
    store: MetadataStore, etcd_client: EtcdClient
) -> None:
    with pytest.raises(InvalidName, match="contains '/'"):
        store.get_repo("a/b")
    with pytest.raises(InvalidName, match="node id"):
        EtcdStore(etcd_client, "a/b")


# SQLite files of earlier versions


PREVIOUS_SCHEMA = """
CREATE TABLE repos (name TEXT PRIMARY KEY, created TEXT NOT NULL, description TEXT NOT NULL);
CREATE TABLE branches (repo TEXT NOT NULL REFERENCES repos(name), name TEXT NOT NULL,
    head TEXT, created TEXT NOT NULL, clean_generation INTEGER, PRIMARY KEY (repo, name));
CREATE TABLE commits (repo TEXT NOT NULL REFERENCES repos(name), id TEXT NOT NULL,
    branch TEXT NOT NULL, parent TEXT, created TEXT NOT NULL, message TEXT NOT NULL,
    origin TEXT NOT NULL, PRIMARY KEY (repo, id));
CREATE TABLE intents (repo TEXT NOT NULL, id TEXT NOT NULL, branch TEXT NOT NULL,
    parent TEXT, created TEXT NOT NULL, message TEXT NOT NULL, origin TEXT NOT NULL,
    mount_id TEXT, PRIMARY KEY (repo, id));
"""
"""The first release's tables (before gc's ``pruned`` and clustering's columns)."""


@pytest.mark.backend("sqlite", reason="only SQLite keeps a schema in a file")
def test_a_store_made_by_an_earlier_version_opens(backend: str, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(PREVIOUS_SCHEMA)
        db.execute("INSERT INTO repos VALUES ('photos', ?, 'd')", (T0.isoformat(),))
        db.execute(
            "INSERT INTO branches VALUES ('photos', 'master', ?, ?, 12)", (cid(1), T0.isoformat())
        )
        db.execute(
            "INSERT INTO commits VALUES ('photos', ?, 'master', NULL, ?, 'm', 'o')",
            (cid(1), at(1).isoformat()),
        )
        db.execute(
            "INSERT INTO intents VALUES ('photos', ?, 'master', ?, ?, 'm', 'o', NULL)",
            (cid(2), cid(1), at(2).isoformat()),
        )
    db.close()
    old = SqliteStore(path, node_id="this-host")
    try:
        assert old.get_repo("photos") == RepoRecord("photos", T0, "d", 1, ())
        # The clean generation meant "equals the head" before working_base existed.
        assert old.get_branch("photos", "master") == BranchRecord(
            "photos", "master", cid(1), T0, 12, cid(1)
        )
        # Commits from before holders were listed were made here, the one host.
        assert old.get_commit("photos", cid(1)) == CommitRecord(
            cid(1), "photos", "master", None, at(1), "m", "o", False, ("this-host",)
        )
        intent = old.list_intents()[0]
        assert intent.commit.holders == ("this-host",)
        old.finish_commit(intent, 13)
        assert old.get_branch("photos", "master").working_base == cid(2)  # type: ignore[union-attr]
        assert old.get_commit("photos", cid(2)).holders == ("this-host",)  # type: ignore[union-attr]
        old.add_holder("photos", cid(2), "node-a")
        assert old.set_placement("photos", (), ("node-a",))
    finally:
        old.close()
    reopened = SqliteStore(path)
    try:
        assert reopened.get_repo("photos").placement == ("node-a",)  # type: ignore[union-attr]
        assert reopened.get_commit("photos", cid(2)).holders == ("node-a", "this-host")  # type: ignore[union-attr]
    finally:
        reopened.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


# pipelines' records


def test_a_commit_keeps_its_provenance_and_job(store: MetadataStore) -> None:
    with_repo(store)
    commit = commit_record(1, provenance=("text@" + cid(7), "stop@" + cid(8)), job="j1")
    store.begin_commit(CommitIntent(commit))
    assert store.list_intents()[0].commit.provenance == commit.provenance
    store.finish_commit(store.list_intents()[0], 5)
    found = store.get_commit("photos", cid(1))
    assert found is not None and found.provenance == commit.provenance and found.job == "j1"
    plain = with_commit(store, 2, cid(1))
    assert store.get_commit("photos", plain.id).provenance == ()  # type: ignore[union-attr]


def test_a_merge_commit_keeps_all_its_parents(store: MetadataStore) -> None:
    with_repo(store)
    first = with_commit(store, 1)
    store.create_branch(branch_record(name="dev", head=first.id))
    merge = commit_record(3, first.id, merge_parents=(cid(2),), origin="merge")
    store.begin_commit(CommitIntent(merge))
    assert store.list_intents()[0].commit.merge_parents == (cid(2),)
    store.finish_commit(store.list_intents()[0], 5)
    found = store.get_commit("photos", cid(3))
    assert found is not None and found.parents == (first.id, cid(2))
    assert found.parent == first.id
    assert store.get_commit("photos", first.id).parents == ()  # type: ignore[union-attr]


@pytest.mark.backend("etcd", reason="only EtcdStore keeps JSON values an earlier version wrote")
def test_commit_values_an_earlier_version_wrote_read_as_single_parent(
    store: MetadataStore,
) -> None:
    assert isinstance(store, EtcdStore)
    with_repo(store)
    commit = with_commit(store, 1)
    # Values written before merges recorded parents (and pipelines provenance) lack keys.
    key = f"{store.prefix}/commits/photos/{commit.id}"
    old = {
        "id": commit.id,
        "branch": "master",
        "parent": None,
        "created": "2026-01-01T00:00:01.000000Z",
        "message": "old",
        "origin": "unmount",
    }
    store.client.put(key, json.dumps(old))
    found = store.get_commit("photos", commit.id)
    assert found is not None and found.message == "old"
    assert found.parents == () and found.merge_parents == () and found.provenance == ()


def test_documents_are_swapped_by_version(store: MetadataStore) -> None:
    assert store.get_document("pipeline", "wc") is None
    first = store.put_document("pipeline", "wc", '{"v": 1}', None)
    with pytest.raises(Conflict, match="exists already"):
        store.put_document("pipeline", "wc", '{"v": 9}', None)
    second = store.put_document("pipeline", "wc", '{"v": 2}', first)
    with pytest.raises(Conflict, match="version"):
        store.put_document("pipeline", "wc", '{"v": 9}', first)
    assert store.get_document("pipeline", "wc") == ('{"v": 2}', second)
    store.put_document("pipeline", "a/b c", "{}", None)
    store.put_document("job", "wc", "{}", None)
    assert [name for name, _body, _v in store.list_documents("pipeline")] == ["a/b c", "wc"]
    store.delete_document("pipeline", "wc")
    store.delete_document("pipeline", "wc")
    assert store.get_document("pipeline", "wc") is None
    assert store.get_document("job", "wc") == ("{}", store.get_document("job", "wc")[1])  # type: ignore[index]
