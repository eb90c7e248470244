"""List brought up to date in part (``volumes/kept_listing.py``) against List worked out
whole (``listing.volume_infos``), over random sequences of what changes what List shows.

Hypothesis draws steps on a real btrfs pool with the real metadata store (SQLite, and etcd
with a second node writing): Docker's Create, Remove, Mount (and a write), Unmount (the
last one commits), a commit, a branch made, reset or deleted, gc, a repo deleted, a
working copy dropped, a volume name written to the store directly, and any of these
landing in the middle of a List (before the names are resolved, or after). After each
step List must be exactly the whole answer; after a step in the middle of a List, the
next List must. On etcd, another node moves heads, prunes commits and deletes repos, and
etcd restarts now and then (the watch is lost: List must work everything out again).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.errors import PfsError
from pfs_volume.meta import (
    BranchRecord,
    EtcdClient,
    EtcdStore,
    MetadataStore,
    SqliteStore,
    VolumeRecord,
    utcnow,
)
from pfs_volume.meta.change_log import Part
from pfs_volume.meta.etcd_changes import EtcdChanges
from pfs_volume.names import parse_ref
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService
from pfs_volume.volumes.listing import volume_infos
from tests.etcd_cluster import EtcdCluster

EXAMPLES = int(os.environ.get("PFS_MODEL_EXAMPLES", "25"))
STEPS = 30
PREFIX = "pfs"
REPOS = ("r0", "r1")
BRANCHES = ("master", "dev")
_worlds = itertools.count()
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

Listing = list[tuple[str, str, object]]
T = TypeVar("T")


def whole(volumes: VolumeService) -> Listing:
    """List worked out from scratch, as before any answer was kept."""
    infos = volume_infos(volumes.repos, volumes.store, PREFIX)
    return [(v.name, v.mountpoint, v.created) for v in infos]


def listed(volumes: VolumeService) -> Listing:
    return [(v.name, v.mountpoint, v.created) for v in volumes.list()]


class Picks:
    """Choices made with numbers drawn before the state is known."""

    def __init__(self, numbers: list[int]) -> None:
        self.numbers = iter(numbers)

    def one(self, among: Sequence[T]) -> T:
        return among[next(self.numbers) % len(among)]


class World:
    """One example's repos (names of its own) on the shared pool and store, the steps
    that change them, and the names and mounts made so far."""

    def __init__(self, volumes: VolumeService, other: MetadataStore | None = None) -> None:
        self.volumes = volumes
        self.repos = volumes.repos
        self.other = other
        self.tag = f"w{next(_worlds)}"
        self.mounts: dict[str, str] = {}
        self.mount_ids = itertools.count()
        self.log: list[str] = []

    def name(self, pick: Picks) -> str:
        """A volume name of every form the grammar has, and some that mean nothing."""
        repo = f"{self.tag}{pick.one(REPOS)}"
        branch = pick.one(BRANCHES)
        commit = pick.one(self.commits(repo) or ["0123456789abcdef0123456789abcdef"])
        ref = pick.one([commit, commit[: pick.one(range(6, 13))], "master", "master~1", "dev"])
        return pick.one(
            [
                repo,
                f"{PREFIX}/{repo}",
                f"{repo}/{branch}",
                f"{repo}@{ref}",
                f"{PREFIX}/{repo}@{ref}",
                f"{repo}/{branch}@{ref}",
                f"{repo}@@bad",
            ]
        )

    def commits(self, repo: str) -> list[str]:
        return [c.id for c in self.repos.list_commits(repo)]

    def step(self, data: st.DataObject) -> Callable[[], object]:
        """A drawn step, not yet run. Every step draws the same numbers, whatever the
        state, and chooses with them (hypothesis replays an example on a pool where ids
        differ)."""
        pick = Picks(data.draw(st.lists(st.integers(0, 2**16), min_size=16, max_size=16)))
        kind = pick.one(self.kinds())
        repo = f"{self.tag}{pick.one(REPOS)}"
        branch = pick.one(BRANCHES)
        name = self.name(pick)
        volumes, repos = self.volumes, self.repos
        self.log.append(f"{kind} {repo} {branch} {name}")
        if kind == "create":
            return lambda: volumes.create(name, {})
        if kind == "remove":
            known = [v.name for v in volumes.store.list_volumes() if v.name.startswith(self.tag)]
            gone = pick.one(known or [name])
            return lambda: volumes.remove(gone)
        if kind == "mount":
            return lambda: self.mount(name)
        if kind == "unmount":
            if not self.mounts:
                return lambda: None
            mount_id = pick.one(sorted(self.mounts))
            return lambda: volumes.unmount(self.mounts.pop(mount_id), mount_id)
        if kind == "commit":
            return lambda: self.commit(repo, branch)
        if kind == "branch":
            start = pick.one([None, "master", "master~1"])
            return lambda: repos.create_branch(repo, branch, parse_ref(start) if start else None)
        if kind == "reset":
            return lambda: repos.reset_branch(repo, branch, parse_ref("master~1"))
        if kind == "delete branch":
            return lambda: repos.delete_branch(repo, branch)
        if kind == "gc":
            keep = pick.one([1, 2])
            return lambda: repos.gc(repo, keep_last=keep)
        if kind == "delete repo":
            return lambda: repos.delete_repo(repo)
        if kind == "drop working copy":
            return lambda: repos.drop_working_copy(repo, branch)
        if kind == "remember":
            return lambda: volumes.store.add_volume(VolumeRecord(name, repo, utcnow()))
        return self.other_step(kind, repo, branch, pick)

    def kinds(self) -> list[str]:
        kinds = ["create", "create", "remove", "mount", "unmount", "commit", "commit"]
        kinds += ["branch", "reset", "delete branch", "gc", "delete repo"]
        kinds += ["drop working copy", "drop working copy", "remember"]
        if self.other is not None:
            kinds += ["elsewhere: move head", "elsewhere: prune", "elsewhere: branch"]
            kinds += ["elsewhere: delete repo", "elsewhere: unhold", "elsewhere: unhold"]
        return kinds

    def other_step(self, kind: str, repo: str, branch: str, pick: Picks) -> Callable[[], object]:
        """What another node writes to the shared store."""
        other = self.other
        assert other is not None
        ids = self.commits(repo)
        if not ids:
            return lambda: None
        commit = pick.one(self.named(repo) or ids)
        if kind == "elsewhere: move head":

            def move() -> None:
                found = other.get_branch(repo, branch)
                if found is not None:
                    other.move_head(repo, branch, found.head, commit)

            return move
        if kind == "elsewhere: unhold":  # no node holds its data any more

            def unhold() -> None:
                found = other.get_commit(repo, commit)
                for holder in found.holders if found is not None else ():
                    other.remove_holder(repo, commit, holder)

            return unhold
        if kind == "elsewhere: prune":
            return lambda: other.mark_pruned(repo, [commit])
        if kind == "elsewhere: branch":
            made = BranchRecord(repo=repo, name=branch, head=commit, created=utcnow())
            return lambda: other.create_branch(made)
        return lambda: other.delete_repo(repo)

    def seed(self) -> None:
        """Every repo with two commits and volumes of each kind naming them: steps then
        find something to change."""
        for base in REPOS:
            repo = f"{self.tag}{base}"
            self.volumes.create(repo, {})
            self.commit(repo, "master")
            first = self.repos.get_branch(repo, "master").head or ""
            self.commit(repo, "master")
            for name in (f"{repo}@{first}", f"{PREFIX}/{repo}@{first[:8]}", f"{repo}/dev"):
                self.volumes.create(name, {})
            self.volumes.create(f"{repo}@master~1", {})

    def named(self, repo: str) -> list[str]:
        """The commits of ``repo`` that remembered volumes name (a write to one of them
        shows in List), oldest name first."""
        found = []
        for volume in self.volumes.store.list_volumes():
            if volume.repo == repo:
                with contextlib.suppress(PfsError):
                    found.append(self.volumes.resolve(volume.name).commit)
        return sorted({c for c in found if c is not None})

    def mount(self, name: str) -> None:
        mount_id = f"{self.tag}m{next(self.mount_ids)}"
        path = self.volumes.mount(name, mount_id)
        self.mounts[mount_id] = name
        if self.volumes.resolve(name).writable:
            (path / f"f{mount_id}").write_text(mount_id)

    def commit(self, repo: str, branch: str) -> None:
        path = self.repos.working_copy(repo, branch)
        (path / "data").write_text(secrets.token_hex(4))
        self.repos.commit_working_copy(repo, branch, "model step", "test")


def run(step: Callable[[], object]) -> bool:
    """Run a step; False when pfs refused it (a refusal changes nothing)."""
    try:
        step()
    except (PfsError, OSError):
        return False
    return True


@contextlib.contextmanager
def landing_in_list(
    volumes: VolumeService, where: str, step: Callable[[], object]
) -> Iterator[None]:
    """``step`` runs in the middle of the next List: after it read its cursors, before
    or after it resolves the names."""
    resolve = volumes.listing.mountpoints

    def during(
        records: Sequence[VolumeRecord],
    ) -> tuple[Sequence[str | None], Sequence[frozenset[Part]]]:
        if where == "before":
            run(step)
        found = resolve(records)
        if where == "after":
            run(step)
        return found

    volumes.listing.mountpoints = during
    try:
        yield
    finally:
        volumes.listing.mountpoints = resolve


def check(world: World, data: st.DataObject, steps: int, restart: Callable[[], None]) -> None:
    volumes = world.volumes
    assert listed(volumes) == whole(volumes)
    world.seed()
    assert listed(volumes) == whole(volumes)
    for number in range(steps):
        where = data.draw(st.sampled_from(["between", "between", "before", "after", "restart"]))
        step = world.step(data)
        if where == "restart":
            restart()
            where = "between"
        if where == "between":
            DONE[run(step)] += 1
        else:
            with landing_in_list(volumes, where, step):
                volumes.list()  # saw the step in part or not at all
        answer = listed(volumes)
        work = volumes.listing.last
        WORK["whole" if work.whole else "in part" if work.resolved else "kept"] += 1
        assert answer == whole(volumes), f"step {number}: {where} {world.log[-3:]}"
    for mount_id, name in list(world.mounts.items()):
        run(lambda m=mount_id, n=name: volumes.unmount(n, m))


DONE: Counter[bool] = Counter()
WORK: Counter[str] = Counter()
"""Over a run: steps pfs did and refused; Lists kept whole, updated in part, worked out
whole. A run where List was never updated in part tested nothing: checked at the end."""


@pytest.fixture(autouse=True, scope="module")
def exercised() -> Iterator[None]:
    yield
    assert DONE[True] > DONE[False] / 2, f"most steps were refused: {DONE}"
    assert WORK["in part"] > WORK["whole"], f"List was rarely updated in part: {WORK}"


@settings(
    max_examples=max(EXAMPLES // 2, 3),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_list_on_sqlite_is_always_the_whole_answer(
    repos: RepoService, store: SqliteStore, pool: BtrfsPool, data: st.DataObject
) -> None:
    volumes = VolumeService(repos, store, PREFIX, pool_changes=pool.changed_paths)
    check(World(volumes), data, STEPS, restart=lambda: None)


@pytest.fixture
def cluster_volumes(
    tmp_path: Path, pool: BtrfsPool
) -> Iterator[tuple[VolumeService, EtcdStore, EtcdCluster]]:
    """A VolumeService over etcd (with its change watch), and another node's store."""
    cluster = EtcdCluster(tmp_path / "etcd", members=1).start()
    client = EtcdClient(cluster.endpoints)
    changes = EtcdChanges(client, "/pfs", "here")
    try:
        here = EtcdStore(client, "here", changed_since=changes.since)
        repos = RepoService(here, pool)
        volumes = VolumeService(repos, here, PREFIX, pool_changes=pool.changed_paths)
        yield volumes, EtcdStore(client, "there"), cluster
    finally:
        changes.stop()
        client.close()
        cluster.cleanup()


@settings(
    max_examples=max(EXAMPLES // 4, 3),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_list_on_etcd_is_always_the_whole_answer(
    cluster_volumes: tuple[VolumeService, EtcdStore, EtcdCluster], data: st.DataObject
) -> None:
    volumes, there, cluster = cluster_volumes
    restarts = itertools.count()

    def restart() -> None:
        if next(restarts) < 1:  # a restart costs seconds: once an example
            cluster.restart(0)

    check(World(volumes, there), data, STEPS, restart)
