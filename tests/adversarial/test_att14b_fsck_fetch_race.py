"""Attack on issue 14's ``pfs fsck --repair``: a fetch (a push to a replica, or a mount
pulling a commit) runs under its fetch lock, not the repo lock fsck holds. fsck reads
the repo's commit records first and lists ``commits/`` after; a fetch that finishes in
between (copy received, this node recorded as a holder, receive marker removed) leaves
fsck with a stale record that does not list this node and no marker: it took the
accepted copy for an ``unaccepted-copy`` and deleted it. The record then lists this
node as holding a snapshot that is gone (a replica lost).

Finding (fixed): fsck looks at the receive marker and then at the commit's current
record before it deletes an unaccepted copy.

A fetch that starts while fsck looks (after the marker was read, before the delete)
finds the copy, discards it and receives its own, which fsck then deleted under it: fsck
now holds the commit's receive lock (``Snapshots.receives``, which every fetch holds)
while it looks again and deletes or unlists, and keeps what a running fetch holds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from pfs_volume.meta import CommitRecord, RepoRecord
from pfs_volume.repos.fsck import Fsck
from pfs_volume.repos.layout import PoolLayout
from pfs_volume.repos.snapshots import Snapshots

COMMIT = "c" * 32
HERE, OTHER = "node-a", "node-b"


@dataclass
class Info:
    readonly: bool


class Pool:
    """Folders stand in for subvolumes; deletions are recorded."""

    def __init__(self, readonly: bool = True) -> None:
        self.deleted: list[Path] = []
        self.readonly = readonly

    def is_subvolume(self, path: Path) -> bool:
        return path.is_dir()

    def info(self, path: Path) -> Info:
        return Info(readonly=self.readonly)

    def delete_subvolume(self, path: Path) -> None:
        self.deleted.append(path)
        path.rmdir()


class Store:
    """The commit's record as fsck's listing read it (a fetch under way here: this node
    not yet a holder, its marker present); the fetch finishes right after the read."""

    def __init__(self, layout: PoolLayout, snapshots: Snapshots, ends: bool = True) -> None:
        self.layout = layout
        self.snapshots = snapshots
        self.ends = ends
        self.record = CommitRecord(
            COMMIT, "r", "master", None, datetime.now(UTC), "m", OTHER, holders=(OTHER,)
        )

    def list_repos(self) -> list[RepoRecord]:
        return [RepoRecord("r", datetime.now(UTC), replicas=2, placement=(HERE, OTHER))]

    def list_commits(self, repo: str) -> list[CommitRecord]:
        if not self.ends:
            return [self.record]
        stale = self.record
        # The fetch ends: the copy is accepted, then its marker goes.
        self.record = replace(self.record, holders=(HERE, OTHER))
        self.snapshots.end_receive("r", COMMIT)
        return [stale]

    def get_commit(self, repo: str, commit_id: str) -> CommitRecord | None:
        return self.record if commit_id == COMMIT else None

    def get_commits(self, repo: str, ids: list[str]) -> list[CommitRecord | None]:
        return [self.get_commit(repo, c) for c in ids]

    def list_intents(self) -> list[Any]:
        return []

    def list_mounts(self, repo: str | None = None) -> list[Any]:
        return []

    def list_branches(self, repo: str) -> list[Any]:
        return []

    def repo_deleted(self, name: str) -> bool:
        return False

    def remove_holder(self, repo: str, commit_id: str, node: str) -> None:
        raise AssertionError("the copy here is whole and recorded")


class Locks:
    @contextmanager
    def repo_lock(self, repo: str) -> Iterator[None]:
        yield


@dataclass
class Coordinator:
    node_id: str = HERE


def fsck_over(store: Store, pool: Pool, layout: PoolLayout, snapshots: Snapshots) -> Fsck:
    """fsck of these stand-ins (no working copies, collector or size meter are used)."""
    nothing = cast(Any, None)
    return Fsck(
        cast(Any, store), cast(Any, pool), layout, cast(Any, Locks()), snapshots, nothing,
        nothing, nothing,
    )  # fmt: skip


def test_fsck_repair_keeps_a_copy_a_fetch_accepted_while_it_looked(tmp_path: Path) -> None:
    layout = PoolLayout(tmp_path)
    pool = Pool()
    snapshots = Snapshots(cast(Any, None), cast(Any, pool), layout, cast(Any, Coordinator()))
    store = Store(layout, snapshots)
    snapshots.store = cast(Any, store)
    snapshots.begin_receive("r", COMMIT)
    (layout.repo_dir("r") / "commits" / COMMIT).mkdir(parents=True)
    (layout.repo_dir("r") / "branches").mkdir()
    fsck = fsck_over(store, pool, layout, snapshots)
    report = fsck.check(repair=True)
    assert pool.deleted == [], report.problems
    assert (layout.repo_dir("r") / "commits" / COMMIT).is_dir()


def fsck_of(tmp_path: Path, readonly: bool, holders: tuple[str, ...]) -> tuple[Fsck, Pool]:
    """fsck of a pool holding commit COMMIT's copy (read-only or not) while a fetch of it
    runs in another thread: it holds the receive lock and has laid no marker yet."""
    layout = PoolLayout(tmp_path)
    pool = Pool(readonly)
    snapshots = Snapshots(cast(Any, None), cast(Any, pool), layout, cast(Any, Coordinator()))
    store = Store(layout, snapshots, ends=False)
    store.record = replace(store.record, holders=holders)
    snapshots.store = cast(Any, store)
    (layout.repo_dir("r") / "branches").mkdir(parents=True)
    return fsck_over(store, pool, layout, snapshots), pool


@contextmanager
def fetching(fsck: Fsck) -> Iterator[None]:
    """A fetch of COMMIT under way in another thread (it holds the receive lock)."""
    holding, done = threading.Event(), threading.Event()

    def fetch() -> None:
        with fsck.snapshots.receives.hold("r", COMMIT):
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=fetch)
    thread.start()
    assert holding.wait(10)
    try:
        yield
    finally:
        done.set()
        thread.join(10)


@pytest.mark.parametrize("readonly", [True, False], ids=["unaccepted", "cut-off"])
def test_fsck_repair_leaves_a_copy_a_running_fetch_holds(tmp_path: Path, readonly: bool) -> None:
    fsck, pool = fsck_of(tmp_path, readonly, holders=(OTHER,))
    (tmp_path / "repos" / "r" / "commits" / COMMIT).mkdir(parents=True)
    with fetching(fsck):
        report = fsck.check(repair=True)
    assert pool.deleted == []
    assert [(p.kind, p.action, p.repaired) for p in report.problems] == [
        (
            "unaccepted-copy" if readonly else "partial-receive",
            "kept: a fetch of it is under way",
            False,
        )
    ]
    report = fsck.check(repair=True)  # the fetch gave up: now it goes
    assert len(pool.deleted) == 1 and report.problems[0].repaired


def test_fsck_repair_does_not_unlist_a_copy_a_running_fetch_is_making(tmp_path: Path) -> None:
    fsck, _ = fsck_of(tmp_path, True, holders=(HERE, OTHER))
    (tmp_path / "repos" / "r" / "commits").mkdir(parents=True)
    with fetching(fsck):
        assert fsck.check(repair=True).problems == []  # remove_holder raises
