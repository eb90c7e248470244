"""``pfs fsck`` finds the commits whose size was never recorded (left unmeasured by a
size meter that was not running, dropped its queue or failed) and ``--repair`` measures
those it can, so that ``repo inspect``'s size counts them; a commit whose parent's
snapshot is not here is reported and kept. Real btrfs, real SQLite store."""

from __future__ import annotations

import os
import socket
import subprocess

from pfs_volume.meta import RepoSize, SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.repos.fsck import Problem
from pfs_volume.volumes import VolumeService
from tests.integration.test_fsck import fsck, kinds, measured
from tests.pfs_node import PfsNode

KIB = 1024
WRITES = ({"a": 96 * KIB}, {"b": 32 * KIB}, {"a": 16 * KIB})
"""Three commits: a root with 96 KiB, one adding 32 KiB, one rewriting 16 KiB."""
WRITTEN = 144 * KIB


def commit_writes(volumes: VolumeService, repo: str) -> list[str]:
    """Commit ``WRITES`` on ``repo``'s master, oldest first; their ids."""
    made = []
    for index, files in enumerate(WRITES):
        path = volumes.mount(f"pfs/{repo}", f"m-{repo}-{index}")
        for name, size in files.items():
            with (path / name).open("r+b" if (path / name).exists() else "wb") as out:
                out.write(os.urandom(size))
        volumes.unmount(f"pfs/{repo}", f"m-{repo}-{index}")
        made.append(volumes.repos.get_branch(repo, "master").head or "")
    return made


def sizes_found(problems: list[Problem]) -> list[tuple[str, str, bool]]:
    return [(p.repo, p.action, p.repaired) for p in problems if p.kind == "unmeasured-commit"]


def test_fsck_measures_commits_the_meter_never_measured(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    """(In process: the size meter is the daemon's to start; here it is not running, so
    the commits of ``later`` are never measured, as after a dropped queue.)"""
    later = commit_writes(volumes, "later")
    assert store.repo_size("later") == RepoSize(0, 3)
    meter = repos._parts.sizes.start()
    try:
        commit_writes(volumes, "at-commit")  # measured at commit time
        assert meter.wait_idle(30)
    finally:
        assert meter.close(30)
    assert store.repo_size("at-commit") == RepoSize(WRITTEN, 0)
    check = repos._parts.fsck.check

    found = check().problems
    assert sizes_found(found) == [("later", "measured", False)]
    assert "3 commit(s) have no size recorded" in found[0].what and later[0] in found[0].what
    assert store.repo_size("later") == RepoSize(0, 3), "a check alone measures nothing"

    assert sizes_found(check(repair=True).problems) == [("later", "measured", True)]
    assert store.repo_size("later") == store.repo_size("at-commit") == RepoSize(WRITTEN, 0)
    assert repos.summary("later").size_unmeasured == 0
    assert check().problems == [], "a second check finds nothing"


def test_fsck_keeps_a_commit_whose_parent_is_pruned(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    made = commit_writes(volumes, "pruned")
    repos.gc("pruned", keep_last=1)
    assert store.repo_size("pruned") == RepoSize(0, 1), "the pruned ones are settled"
    check = repos._parts.fsck.check

    for repair in (False, True, False):
        found = check(repair=repair).problems
        assert sizes_found(found) == [("pruned", "kept", False)]
        assert "its parent was pruned" in found[0].what and made[-1] in found[0].what
    assert store.repo_size("pruned") == RepoSize(0, 1)
    assert store.commit_size("pruned", made[-1]) is None


def test_fsck_keeps_a_commit_whose_parent_is_not_held_here(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    """A parent whose record does not list this node (here: held by no node) is no base
    to measure against; the root commit is measured all the same."""
    made = commit_writes(volumes, "unheld")
    holder = store.get_commit("unheld", made[1]).holders[0]  # type: ignore[union-attr]
    store.remove_holder("unheld", made[1], holder)
    check = repos._parts.fsck.check

    found = {p.action: p for p in check(repair=True).problems if p.kind == "unmeasured-commit"}
    assert set(found) == {"measured", "kept"}
    assert found["measured"].repaired and made[0] in found["measured"].what
    assert "its parent's snapshot is not on this node" in found["kept"].what
    assert made[2] in found["kept"].what and not found["kept"].repaired
    assert store.commit_size("unheld", made[0]) == 96 * KIB
    assert store.commit_size("unheld", made[2]) is None
    # made[1] itself is an unaccepted copy now: not this node's to measure.
    assert store.repo_size("unheld") == RepoSize(96 * KIB, 2)


def test_fsck_repair_measures_what_a_daemon_never_did(node: PfsNode) -> None:
    node.start()
    name = f"{node.driver_name}/photos"
    for mount_id, size in (("m1", 96 * KIB), ("m2", 32 * KIB)):
        path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})["Mountpoint"]
        with open(os.path.join(path, mount_id), "wb") as out:
            out.write(os.urandom(size))
        assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id}) == {}
    assert measured(node, "photos") == (128 * KIB, 0)
    assert fsck(node)["problems"] == []
    node.stop()
    # The sizes as a meter that never ran left them: none recorded, none in the total.
    mount = ["mount", "-o", "loop,nosuid,nodev,noatime"]
    subprocess.run([*mount, node.state_dir / "pool.img", node.pool_root], check=True)
    store = SqliteStore(node.pool_root / "meta.db", socket.gethostname())
    with store._write() as db:
        db.execute("DELETE FROM commit_sizes WHERE repo='photos'")
        db.execute("UPDATE repo_sizes SET bytes=0, settled=0 WHERE repo='photos'")
    store.close()
    node.start()
    assert "(2 commit(s) not measured)" in node.cli("repo", "inspect", "photos").stdout

    found = kinds(fsck(node))
    assert set(found) == {("photos", "unmeasured-commit")}
    assert found["photos", "unmeasured-commit"]["action"] == "measured"
    assert "--repair: measured" in node.cli("fsck", check=False).stdout
    repaired = kinds(fsck(node, "--repair"))["photos", "unmeasured-commit"]
    assert repaired["repaired"] is True
    assert measured(node, "photos", timeout=0) == (128 * KIB, 0)
    assert fsck(node)["problems"] == []
