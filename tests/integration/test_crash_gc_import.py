"""A daemon killed (as by kill -9) in the middle of a gc or of an import, then
restarted: the gc is finished (its pruned snapshots go, every kept commit stays whole),
the half import is removed and may be made again."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_fsck import measured
from tests.pfs_node import PfsNode


def commit_files(node: PfsNode, repo: str, files: dict[str, str], mount_id: str) -> None:
    name = f"{node.driver_name}/{repo}"
    path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})["Mountpoint"]
    for rel, text in files.items():
        Path(path, rel).write_text(text)
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id}) == {}


def snapshot(node: PfsNode, repo: str, commit: str) -> Path:
    return node.pool_root / "repos" / repo / "commits" / commit


def test_a_gc_killed_after_marking_is_finished_at_start_up(node: PfsNode) -> None:
    node.start()
    for index in range(3):
        commit_files(node, "old", {f"f{index}": f"v{index}"}, f"m{index}")
    log = node.cli_json("log", "old")
    assert len(log) == 3
    node.stop()

    node.start(env={"PFS_FAILPOINTS": "gc.after_mark"})
    gc = node.cli("gc", "old", "--keep-last", "1", check=False)
    assert gc.returncode != 0
    assert node.wait_exit() == 137  # the failpoint was reached

    node.start()
    after = node.cli_json("log", "old")
    assert [c["id"] for c in after] == [c["id"] for c in log]  # records stay
    head, *pruned = log
    for commit in pruned:
        assert not snapshot(node, "old", commit["id"]).exists()
    assert {p.name for p in snapshot(node, "old", head["id"]).iterdir()} == {"f0", "f1", "f2"}
    assert list((node.pool_root / "gc").iterdir()) == [], "the marker is settled"
    # The branch goes on from its head.
    commit_files(node, "old", {"f3": "v3"}, "m9")
    assert len(node.cli_json("log", "old")) == 4


def test_a_gc_killed_before_marking_prunes_nothing(node: PfsNode) -> None:
    node.start(env={"PFS_FAILPOINTS": "gc.after_marker"})
    for index in range(2):
        commit_files(node, "old", {f"f{index}": f"v{index}"}, f"m{index}")
    # Measured before the kill: fsck would rightly report a commit the kill left
    # unmeasured (``unmeasured-commit``).
    assert measured(node, "old")[1] == 0
    gc = node.cli("gc", "old", "--keep-last", "1", check=False)
    assert gc.returncode != 0
    assert node.wait_exit() == 137  # the failpoint was reached: the marker is written

    node.start()
    log = node.cli_json("log", "old")
    assert len(log) == 2 and not any(c["pruned"] for c in log)
    assert all(snapshot(node, "old", c["id"]).is_dir() for c in log)
    assert list((node.pool_root / "gc").iterdir()) == [], "the marker is settled"
    assert node.cli_json("fsck")["problems"] == []


@pytest.mark.parametrize("point", ["import.after_rename"])
def test_an_import_killed_after_moving_its_snapshots_is_removed_and_can_be_redone(
    node: PfsNode, tmp_path: Path, point: str
) -> None:
    node.start()
    commit_files(node, "photos", {"a": "1"}, "m1")
    commit_files(node, "photos", {"b": "2"}, "m2")
    dump = tmp_path / "photos.pfs"
    node.cli("repo", "export", "photos", "-o", str(dump))
    node.stop()

    node.start(env={"PFS_FAILPOINTS": point})
    imported = node.cli("repo", "import", str(dump), "--as", "copy", check=False)
    assert imported.returncode != 0
    assert node.wait_exit() == 137  # the failpoint was reached

    node.start()
    assert "copy" not in [r["name"] for r in node.cli_json("repo", "list")]
    assert not (node.pool_root / "repos" / "copy").exists()
    node.cli("repo", "import", str(dump), "--as", "copy")
    copied = node.cli_json("log", "copy")
    assert [c["id"] for c in copied] == [c["id"] for c in node.cli_json("log", "photos")]
    assert {p.name for p in snapshot(node, "copy", copied[0]["id"]).iterdir()} == {"a", "b"}
