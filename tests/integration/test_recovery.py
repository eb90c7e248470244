"""Start-up reconciliation of disk and metadata, on a real pool."""

from __future__ import annotations

from pytest import MonkeyPatch

from pfs_volume.btrfs import BtrfsPool
from pfs_volume.meta import CommitIntent, CommitRecord, SqliteStore, utcnow
from pfs_volume.names import parse_ref
from pfs_volume.repos import PoolLayout, RepoService
from pfs_volume.repos.markers import Markers
from pfs_volume.volumes import VolumeService


def committed(volumes: VolumeService, repo: str, text: str) -> str:
    path = volumes.mount(f"pfs/{repo}", "m-" + text)
    (path / "f").write_text(text)
    volumes.unmount(f"pfs/{repo}", "m-" + text)
    return volumes.repos.get_branch(repo, "master").head or ""


def test_interrupted_repo_delete_is_finished(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    committed(volumes, "doomed", "x")
    committed(volumes, "kept", "y")
    store.delete_repo("doomed")  # the records went; the crash came before the data did
    assert repos.repo_dir("doomed").exists()
    report = repos.recover()
    assert report.purged_repos == ["doomed"]
    assert not repos.repo_dir("doomed").exists()
    assert store.list_deleted_repos() == []
    assert (repos.branch_path("kept", "master") / "f").read_text() == "y"


def test_start_up_looks_at_no_commit_and_fsck_reports_unknown_snapshots(
    volumes: VolumeService, repos: RepoService, pool: BtrfsPool, monkeypatch: MonkeyPatch
) -> None:
    head = committed(volumes, "r", "x")
    stray = repos.commit_path("r", "f" * 32)
    pool.snapshot(repos.commit_path("r", head), stray, readonly=True)
    looked: list[str] = []
    for name in ("list_commits", "get_commit"):
        real = getattr(repos.store, name)
        monkeypatch.setattr(
            repos.store, name, lambda *a, _r=real, _n=name: looked.append(_n) or _r(*a)
        )
    repos.recover()
    assert looked == [], "start-up reads no commit record when no crash left work"
    problems = repos._parts.fsck.check(repair=True).problems
    assert [(p.kind, p.repaired) for p in problems] == [
        ("snapshot-without-record", False),
        ("unmeasured-commit", True),  # no size meter runs here: fsck measures the commit
    ]
    assert (stray / "f").read_text() == "x", "data pfs does not understand is never deleted"


def test_incoming_is_emptied(repos: RepoService, pool: BtrfsPool) -> None:
    pool.create_subvolume(repos.incoming_dir / "partial")
    (repos.incoming_dir / "junk").mkdir()
    repos.recover()
    assert list(repos.incoming_dir.iterdir()) == []


def test_intent_for_a_moved_head_is_abandoned_without_touching_data(
    volumes: VolumeService, repos: RepoService, store: SqliteStore, pool: BtrfsPool
) -> None:
    first = committed(volumes, "r", "one")
    second = committed(volumes, "r", "two")
    stale = CommitRecord(
        id="e" * 32,
        repo="r",
        branch="master",
        parent=first,
        created=utcnow(),
        message="stale",
        origin="unmount",
    )
    store.begin_commit(CommitIntent(stale))
    pool.snapshot(repos.branch_path("r", "master"), repos.commit_path("r", stale.id), readonly=True)
    report = repos.recover()
    assert report.abandoned == [stale.id] and report.finished == []
    assert not repos.commit_path("r", stale.id).exists()
    assert [c.id for c in repos.log("r", parse_ref("master"))] == [second, first]
    assert (repos.branch_path("r", "master") / "f").read_text() == "two"


def test_a_gc_interrupted_after_marking_is_finished(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    old = committed(volumes, "r", "one")
    kept = committed(volumes, "r", "two")
    markers = Markers(PoolLayout(repos.pool.root))
    markers.begin_gc("r", [old, kept])
    store.mark_pruned("r", [old])  # the crash came before the snapshot was deleted
    repos.recover()
    assert not repos.commit_path("r", old).exists()
    assert store.get_commit("r", old).pruned  # type: ignore[union-attr]
    assert repos.commit_path("r", kept).exists(), "only commits marked pruned go"
    assert markers.gcs() == []


def test_a_gc_interrupted_before_marking_prunes_nothing(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    old = committed(volumes, "r", "one")
    committed(volumes, "r", "two")
    Markers(PoolLayout(repos.pool.root)).begin_gc("r", [old])
    repos.recover()
    assert repos.commit_path("r", old).exists()
    assert not store.get_commit("r", old).pruned  # type: ignore[union-attr]


def test_an_interrupted_receive_is_settled_by_its_marker(
    volumes: VolumeService, repos: RepoService, store: SqliteStore, pool: BtrfsPool
) -> None:
    head = committed(volumes, "r", "x")
    partial = "d" * 32
    markers = Markers(PoolLayout(repos.pool.root))
    markers.begin_receive("r", partial)
    pool.create_subvolume(repos.commit_path("r", partial))  # writable: cut off
    markers.begin_receive("r", head)  # recorded: nothing to do
    report = repos.recover()
    assert sorted(report.receives) == sorted(
        [f"r@{partial}: partial copy deleted", f"r@{head}: nothing to do"]
    )
    assert not repos.commit_path("r", partial).exists()
    assert (repos.commit_path("r", head) / "f").read_text() == "x"
    assert markers.receives() == []
