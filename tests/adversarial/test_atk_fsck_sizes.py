"""Attacks on ``pfs fsck``'s receive lock (8c80418) and its ``unmeasured-commit`` repair
(9308f8e, ef52d25, 34675f3): real btrfs, a real SQLite store and a real etcd.

Each test stages one interleaving deterministically, by hooking the call that sits at the
edge of the window (a read, ``pool.info``, the commit's ``committed`` hand-off, the
listing of a send), and doing there what another thread may do at that moment.

Findings (each test fails on main 34675f3):

* etcd ``mark_pruned`` reads the commits' sizes before the branch parts it guards: a
  measurement (the meter, or now ``fsck --repair``, which measures exactly the old
  commits gc prunes) that lands between the two reads is taken for "unmeasured", so the
  pruned commit's bytes stay in the total and it is settled twice.
* fsck's partial-receive repair re-checks the lock and the marker, not the subvolume: a
  fetch that finished between fsck's ``info`` and its ``try_hold`` has its whole,
  accepted copy deleted.
* a commit just made is reported unmeasured (and measured twice under --repair) in the
  window between its intent going and the meter queueing it.
* ``MEASURE_BUDGET`` bounds when a measurement may start, not how long it runs
  (``bytes_written`` has a 600 s timeout; a root commit's walk has none).
* a deletion held up by fsck's ``btrfs send`` (a gc's, a repo deletion's) is never
  drained when that send ends.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.btrfs import changes as changes_module
from pfs_volume.errors import BtrfsCommandError
from pfs_volume.meta import EtcdClient, EtcdStore, MetadataStore, RepoSize, SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.repos import fsck as fsck_module
from pfs_volume.repos import sizes as sizes_module
from pfs_volume.volumes import VolumeService
from tests.contract.test_metadata_store import cid, with_commit, with_repo
from tests.etcd_cluster import EtcdCluster

pytestmark = pytest.mark.timeout(180)

KIB = 1024


# -- helpers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def etcd_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdClient]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), members=1)
    try:
        cluster.start()
        client = EtcdClient(cluster.endpoints)
        yield client
        client.close()
    finally:
        cluster.cleanup()


def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> MetadataStore:
    if backend == "etcd":
        client: EtcdClient = request.getfixturevalue("etcd_client")
        return EtcdStore(client, "node-a", f"/atk-{os.urandom(6).hex()}")
    return SqliteStore(tmp_path / "meta.db")


def commit_once(volumes: VolumeService, repo: str, files: dict[str, int], tag: str) -> str:
    """One commit on ``repo``'s master writing ``files`` (name -> bytes); its id."""
    path = volumes.mount(f"pfs/{repo}", f"m-{repo}-{tag}")
    for name, size in files.items():
        (path / name).write_bytes(os.urandom(size))
    volumes.unmount(f"pfs/{repo}", f"m-{repo}-{tag}")
    return volumes.repos.get_branch(repo, "master").head or ""


def sizes_problems(report: Any) -> list[Any]:
    return [p for p in report.problems if p.kind == "unmeasured-commit"]


# -- 1. etcd: a measurement between mark_pruned's two reads -----------------------------


@pytest.mark.parametrize("backend", ["sqlite", "etcd"])
def test_measure_racing_prune_keeps_the_total_equal_to_the_kept_sizes(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """gc marks commit 1 pruned while fsck --repair (or the meter) records its size.
    Whatever the order, the total must be the bytes of the measured kept commits and
    ``unmeasured`` the kept commits with no size.

    etcd: ``_prune_from_parts`` reads the sizes (``_sizes``) and only then the branch parts
    it guards; a size recorded in between moved the part before it was read, so the guard
    passes and commit 1 is taken out as "unmeasured" (settled + 1) while its bytes stay.
    Result: RepoSize(bytes=100, unmeasured=0) for a repo whose only kept commit (2) has no
    size: should be RepoSize(0, 1)."""
    store = make_store(backend, tmp_path, request)
    try:
        with_repo(store)
        with_commit(store, 1)
        with_commit(store, 2, cid(1))
        assert store.repo_size("photos") == RepoSize(0, 2)
        if isinstance(store, EtcdStore):
            original = store._sizes
            fired: list[bool] = []

            def sizes_then_measured(keys: list[str]) -> dict[str, int]:
                found = original(keys)
                if not fired:  # the measurement commits right after this read
                    fired.append(True)
                    assert store.record_commit_size("photos", cid(1), 100)
                return found

            store._sizes = sizes_then_measured  # type: ignore[method-assign]
            store.mark_pruned("photos", [cid(1)])
            assert fired
        else:
            # SQLite takes both in one transaction each: the same two orders, serialised.
            done = threading.Event()

            def measure() -> None:
                store.record_commit_size("photos", cid(1), 100)
                done.set()

            worker = threading.Thread(target=measure)
            worker.start()
            store.mark_pruned("photos", [cid(1)])
            worker.join(10)
            assert done.is_set()
        assert store.get_commit("photos", cid(1)).pruned  # type: ignore[union-attr]
        assert store.repo_size("photos") == RepoSize(0, 1), "pruned bytes left in the total"
    finally:
        store.close()


# -- 2. partial-receive: a fetch that finished between fsck's look and its lock ---------


def test_fsck_never_deletes_a_copy_a_fetch_finished_after_fsck_looked(
    volumes: VolumeService, repos: RepoService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsck reads the receive markers (none), then finds commits/X writable (a fetch began
    after the markers were read and is receiving X). Before fsck takes X's receive lock,
    the fetch ends: X is read-only, this node is listed, the marker is gone, the lock is
    free. Under the lock fsck looks again at the lock and the marker only, not at X, and
    deletes the whole, accepted copy it had seen writable a moment before: the node is
    listed as holding X and X is gone (a mount of it fails until repair unlists it)."""
    commit_once(volumes, "r", {"a": 4 * KIB}, "0")
    head = commit_once(volumes, "r", {"b": 4 * KIB}, "1")
    pool = repos._parts.pool
    path = repos.commit_path("r", head)
    # The copy as a receive leaves it mid-way: writable (same data).
    aside = path.with_name("aside")
    pool.snapshot(path, aside, readonly=False)
    pool.delete_subvolume(path)
    pool.move(aside, path)
    assert not pool.info(path).readonly
    real_info = pool.info
    finished: list[bool] = []

    def info_then_fetch_ends(target: Path) -> Any:
        seen = real_info(target)
        if target == path and not seen.readonly and not finished:
            # The fetch completes now: its copy turns read-only (btrfs receive's end),
            # the holder is recorded (it already is), the marker goes, the lock is freed.
            subprocess.run(["btrfs", "property", "set", "-ts", str(path), "ro", "true"], check=True)
            finished.append(True)
        return seen

    monkeypatch.setattr(pool, "info", info_then_fetch_ends)
    report = repos._parts.fsck.check(repair=True)
    monkeypatch.undo()
    assert finished
    # Seen: the copy deleted as "partial-receive", then, in the same run, the node
    # unlisted as "missing-snapshot": this node's replica of X is gone.
    assert repos.snapshot_exists("r", head), (
        "fsck deleted the whole copy a fetch had just accepted: " + str(report.problems)
    )


# -- 3. a commit just made, before the meter has queued it ---------------------------------


def test_a_commit_just_made_is_no_unmeasured_commit(
    volumes: VolumeService, repos: RepoService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """34675f3 says "the meter tells fsck which commits it is about to measure, so a
    commit just made is no problem". But ``Commits.commit_working_copy`` ends its intent
    and lets go of the branch lock, then calls ``coordinator.committed`` and only then
    the listeners (``SizeMeter.measure_later``). A ``pfs fsck`` in another thread in that
    window finds the commit kept, on disk, unsized and not queued: reported (``pfs fsck``
    exits 1 on a healthy pool), and under --repair measured at the same time as the
    meter (two btrfs sends; the store keeps one size)."""
    meter = repos._parts.sizes.start()
    seen: list[Any] = []
    coordinator = repos._parts.coordinator
    real_committed = coordinator.committed

    def committed_with_fsck(commit: Any) -> None:
        # Another thread's pfs fsck, in the window (bounded: it must not wait on us).
        worker = threading.Thread(target=lambda: seen.append(repos._parts.fsck.check()))
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "fsck blocked in the window: no window"
        real_committed(commit)

    try:
        commit_once(volumes, "w", {"a": 8 * KIB}, "0")
        monkeypatch.setattr(coordinator, "committed", committed_with_fsck)
        commit_once(volumes, "w", {"b": 8 * KIB}, "1")
        monkeypatch.undo()
        assert meter.wait_idle(30)
    finally:
        assert meter.close(30)
    assert seen, "fsck ran in the window"
    assert store.repo_size("w") == RepoSize(16 * KIB, 0), "the meter measured both"
    assert sizes_problems(seen[0]) == [], "a commit just made reported: " + str(seen[0].problems)


# -- 4. MEASURE_BUDGET: checked before a measurement, never during one --------------------


def test_the_measure_budget_bounds_a_slow_measurement(
    volumes: VolumeService, repos: RepoService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``_measure`` looks at the deadline only before each commit; ``SizeMeter.measure``
    calls ``bytes_written`` with its default 600 s timeout (CHANGES_TIMEOUT), and a root
    commit's walk has none. One commit whose listing is slow (a deep folder: send builds
    each path from the root, "half a minute for 2,000 levels") holds ``fsck --repair``
    far past MEASURE_BUDGET (60 s) and the 120 s the CLI waits. Staged: budget 0.5 s,
    a listing that takes 3 s (the real ``bytes_written``, slowed)."""
    commit_once(volumes, "slow", {"a": 4 * KIB}, "0")
    commit_once(volumes, "slow", {"b": 4 * KIB}, "1")
    assert store.repo_size("slow") == RepoSize(0, 2)
    monkeypatch.setattr(fsck_module, "MEASURE_BUDGET", 0.5)
    real = changes_module.bytes_written

    def slow_listing(
        parent: Path | None, child: Path, *, timeout: float = 600.0, cancel: Any = None
    ) -> int:
        # Stands for a slow send (3 s) under the deadline it is given, as dump_lines is.
        if timeout < 3:
            time.sleep(timeout)
            raise BtrfsCommandError(["btrfs", "send"], -1, f"took longer than {timeout} s")
        time.sleep(3)
        return real(parent, child, timeout=timeout, cancel=cancel)

    monkeypatch.setattr(sizes_module, "bytes_written", slow_listing)
    started = time.monotonic()
    repos._parts.fsck.check(repair=True)
    took = time.monotonic() - started
    assert took < 0.5 + 1.5, f"fsck --repair took {took:.1f}s with a 0.5 s budget"


# -- 5. a deletion fsck's send held up is never drained -------------------------------------


def test_a_repo_deleted_while_fsck_measures_it_is_gone_after_fsck(
    volumes: VolumeService, repos: RepoService, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsck measures outside the repo lock. The repo is deleted while fsck's ``btrfs send``
    reads its snapshots: btrfs refuses, the deletion is deferred "until the send ends
    (``drain_pending``)". But neither ``Fsck._measure`` nor ``SizeMeter`` drains when its
    send ends (only gc, repo delete, exports and peer sends do), so the deleted repo's data
    stays in the pool until some unrelated operation. Also checked: no 500 (fsck ends),
    no size left behind for the deleted repo."""
    commit_once(volumes, "gone", {"a": 4 * KIB}, "0")
    path = volumes.mount("pfs/gone", "m-many")
    for n in range(3000):  # a listing much larger than the pipes: send stays running
        (path / f"{n:05d}{'x' * 200}").write_bytes(b"y")
    volumes.unmount("pfs/gone", "m-many")
    assert store.repo_size("gone") == RepoSize(0, 2)
    real = changes_module.dump_lines
    deleted: list[bool] = []

    def listing_with_delete(*args: Any, **kwargs: Any) -> Iterator[str]:
        for index, line in enumerate(real(*args, **kwargs)):
            if index == 0 and not deleted:
                repos.delete_repo("gone")
                deleted.append(True)
            yield line

    monkeypatch.setattr(changes_module, "dump_lines", listing_with_delete)
    report = repos._parts.fsck.check(repair=True)
    monkeypatch.undo()
    assert deleted
    assert store.repo_size("gone") is None and store.commit_sizes("gone") == {}
    assert repos.pending_repo_deletions() == set() and not repos.repo_dir("gone").exists(), (
        f"deleted repo's data still in the pool after fsck's send ended; report: {report.problems}"
    )


# -- held: two fsck --repair at once, and the meter, never count a size twice ------------


def test_two_fsck_repairs_and_the_meter_at_once_count_each_size_once(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    """(Holds.) Each measures every unmeasured commit; the store records the first size of
    each and refuses the rest, so the total is the sum of the recorded sizes."""
    made = [commit_once(volumes, "twice", {f"f{n}": (n + 1) * 4 * KIB}, str(n)) for n in range(4)]
    meter = repos._parts.sizes.start()
    try:
        for commit in made:
            meter.measure_later(store.get_commit("twice", commit))  # type: ignore[arg-type]
        workers = [
            threading.Thread(target=lambda: repos._parts.fsck.check(repair=True)) for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert meter.wait_idle(30)
    finally:
        assert meter.close(30)
    sizes = store.commit_sizes("twice")
    assert set(sizes) == set(made)
    assert store.repo_size("twice") == RepoSize(sum(sizes.values()), 0)
    assert sum(sizes.values()) == 40 * KIB


def test_a_root_commits_walk_stops_at_its_deadline(tmp_path: Path) -> None:
    """A root commit is measured by a walk (no send): it too ends at its deadline."""
    for n in range(50):
        (tmp_path / f"f{n}").write_bytes(b"x")
    assert changes_module.bytes_written(None, tmp_path) == 50
    with pytest.raises(BtrfsCommandError, match="longer than"):
        changes_module.bytes_written(None, tmp_path, timeout=-1)
