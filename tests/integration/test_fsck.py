"""``pfs fsck`` against a real daemon: each kind of problem is reported, ``--repair``
fixes what it can without losing data, and start-up looks at none of it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from pfs_volume.meta import SqliteStore
from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService
from tests.pfs_node import PfsNode

STRAY = "f" * 32


def commit_files(node: PfsNode, repo: str, text: str, mount_id: str) -> None:
    name = f"{node.driver_name}/{repo}"
    path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})["Mountpoint"]
    Path(path, "f").write_text(text)
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id}) == {}


def btrfs(*args: str | Path) -> None:
    subprocess.run(["btrfs", *map(str, args)], check=True, capture_output=True)


def fsck(node: PfsNode, *args: str) -> dict[str, Any]:
    done = node.cli("fsck", "--json", *args, check=False)
    report: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == (1 if any(not p["repaired"] for p in report["problems"]) else 0)
    return report


def measured(node: PfsNode, repo: str, timeout: float = 30.0) -> tuple[int, int]:
    """``repo inspect``'s size and unmeasured count, once the meter measured it all."""
    deadline = time.monotonic() + timeout
    while True:
        shown = node.cli_json("repo", "inspect", repo)
        if shown["size_unmeasured_commits"] == 0 or time.monotonic() > deadline:
            return shown["size"], shown["size_unmeasured_commits"]
        time.sleep(0.2)


def kinds(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["repo"], p["kind"]): p for p in report["problems"]}


def test_fsck_reports_and_repairs_each_problem_and_start_up_looks_at_none(
    node: PfsNode,
) -> None:
    node.start()
    for repo in ("a", "b", "c"):
        for index in range(2):
            commit_files(node, repo, f"{repo}{index}", f"m-{repo}{index}")
    assert fsck(node)["problems"] == []
    for repo in ("a", "b", "c"):  # else the meter's queue goes when the daemon stops
        assert measured(node, repo)[1] == 0
    commits = {r: [c["id"] for c in node.cli_json("log", r)] for r in ("a", "b", "c")}
    root = node.pool_root / "repos"
    # a: a snapshot with no record (kept), a partial receive (deleted), a commit whose
    # snapshot is gone (unlisted), a working copy with no branch (kept).
    btrfs(
        "subvolume",
        "snapshot",
        "-r",
        root / "a/commits" / commits["a"][0],
        root / "a/commits" / STRAY,
    )
    btrfs("subvolume", "create", root / "a/commits" / ("e" * 32))
    btrfs("subvolume", "delete", root / "a/commits" / commits["a"][1])
    btrfs("subvolume", "create", root / "a/branches/ghost")
    # b: a pruned commit whose snapshot is back (deleted).
    node.cli("gc", "b", "--keep-last", "1")
    pruned = root / "b/commits" / commits["b"][1]
    assert not pruned.exists()
    btrfs("subvolume", "snapshot", "-r", root / "b/commits" / commits["b"][0], pruned)
    (root / "stray").mkdir()  # a folder with no repo (kept)
    node.stop()  # the store is the daemon's alone: edited with the pool mounted here
    mount = ["mount", "-o", "loop,nosuid,nodev,noatime"]
    subprocess.run([*mount, node.state_dir / "pool.img", node.pool_root], check=True)
    # c: a stale working copy (made from another commit than the head: set aside) and a
    # copy no node is recorded to hold (kept).
    store = SqliteStore(node.pool_root / "meta.db", socket.gethostname())
    master = store.get_branch("c", "master")
    assert master is not None and master.clean_generation is not None
    store.set_clean_generation("c", "master", master.clean_generation, commits["c"][1])
    node_id = store.get_commit("c", commits["c"][1]).holders[0]  # type: ignore[union-attr]
    store.remove_holder("c", commits["c"][1], node_id)
    store.close()

    node.start()  # start-up looks at none of this
    assert (root / "a/commits" / ("e" * 32)).exists() and pruned.exists()
    assert (root / "c/branches/master").exists()
    assert STRAY not in node.log()

    found = kinds(fsck(node))
    expected = {
        ("a", "snapshot-without-record"),
        ("a", "partial-receive"),
        ("a", "missing-snapshot"),
        ("a", "working-copy-without-branch"),
        ("b", "pruned-snapshot"),
        ("c", "stale-working-copy"),
        ("c", "unaccepted-copy"),
        ("stray", "folder-without-repo"),
    }
    assert set(found) == expected
    assert not any(p["repaired"] for p in found.values())
    assert STRAY in found["a", "snapshot-without-record"]["what"]

    repaired = kinds(fsck(node, "--repair"))
    assert set(repaired) == expected
    done = {key for key, p in repaired.items() if p["repaired"]}
    assert done == {
        ("a", "partial-receive"),
        ("a", "missing-snapshot"),
        ("b", "pruned-snapshot"),
        ("c", "stale-working-copy"),
    }
    assert (root / "a/commits" / STRAY / "f").read_text() == "a1", "never deleted"
    assert not (root / "a/commits" / ("e" * 32)).exists() and not pruned.exists()
    assert not (root / "c/branches/master").exists()
    assert (root / "a/branches/ghost").exists() and (root / "stray").exists()
    left = kinds(fsck(node))
    assert set(left) == {
        ("a", "snapshot-without-record"),
        ("a", "working-copy-without-branch"),
        ("c", "unaccepted-copy"),
        ("stray", "folder-without-repo"),
    }
    # The stale branch goes on from its head.
    commit_files(node, "c", "c2", "m-c2")
    assert len(node.cli_json("log", "c")) == 3


def test_fsck_deletes_the_data_a_repo_deletion_left(
    volumes: VolumeService, repos: RepoService, store: SqliteStore
) -> None:
    """(In process: a daemon finishes a deletion it was cut off from at its next start.)"""
    path = volumes.mount("pfs/doomed", "m1")
    (path / "f").write_text("x")
    volumes.unmount("pfs/doomed", "m1")
    store.delete_repo("doomed")  # the records went; the data is still in the pool
    check = repos._parts.fsck.check
    assert [(p.repo, p.kind, p.repaired) for p in check().problems] == [
        ("doomed", "data-of-deleted-repo", False)
    ]
    assert [p.repaired for p in check(repair=True).problems] == [True]
    assert not repos.repo_dir("doomed").exists() and check().problems == []
