"""Crash safety of commits: a real daemon dies (as by kill -9) at each point of the
commit path, restarts, and must show exactly one whole commit with nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.pfs_node import PfsNode

CRASH_POINTS = {
    # intent recorded, no snapshot yet: start-up redoes the commit from the working copy
    "commit.after_intent": "1 redone, 1 abandoned",
    # snapshot taken, no commit record: start-up finishes it
    "commit.after_snapshot": "1 commit(s) finished, 0 redone",
    # snapshot taken and the write lock checked, no commit record: start-up finishes it
    "commit.before_finish": "1 commit(s) finished, 0 redone",
    # record inserted, head not moved: the transaction rolls back, start-up finishes it
    "commit.between_record_and_head": "1 commit(s) finished, 0 redone",
    # committed, but Docker never got the answer: nothing to recover
    "commit.after_finish": "0 commit(s) finished, 0 redone, 0 abandoned",
}


def commits_on_disk(node: PfsNode, repo: str) -> list[str]:
    folder = node.pool_root / "repos" / repo / "commits"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(("point", "recovery"), CRASH_POINTS.items())
def test_crash_during_commit_loses_nothing(node: PfsNode, point: str, recovery: str) -> None:
    node.start()
    name = f"{node.driver_name}/photos"
    first = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": "m1"})["Mountpoint"]
    Path(first, "a").write_text("first")
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": "m1"}) == {}
    [base] = node.cli_json("log", "photos")
    node.stop()

    node.start(env={"PFS_FAILPOINTS": point})
    path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": "m2"})["Mountpoint"]
    Path(path, "b").write_text("second")
    Path(path, "a").unlink()
    with pytest.raises(requests.ConnectionError):
        node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": "m2"})
    assert node.wait_exit() == 137

    node.start()
    last_recovery = [line for line in node.log().splitlines() if "recovered:" in line][-1]
    assert recovery in last_recovery
    log = node.cli_json("log", "photos")
    assert len(log) == 2, f"expected one new commit after {point}, got {log}"
    assert log[1] == base and log[0]["parent"] == base["id"]
    snapshot = node.pool_root / "repos" / "photos" / "commits" / log[0]["id"]
    assert (snapshot / "b").read_text() == "second"
    assert not (snapshot / "a").exists()
    assert commits_on_disk(node, "photos") == sorted(c["id"] for c in log)
    assert node.cli_json("repo", "inspect", "photos")["mounts"] == []
    # Docker may repeat the Unmount it never got an answer to: nothing more happens.
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": "m2"}) == {}
    assert len(node.cli_json("log", "photos")) == 2
    # The branch works on as before.
    path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": "m3"})["Mountpoint"]
    assert Path(path, "b").read_text() == "second"
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": "m3"}) == {}
    assert len(node.cli_json("log", "photos")) == 2


def test_kill_while_mounted_then_unmount_after_restart_commits(node: PfsNode) -> None:
    node.start()
    name = f"{node.driver_name}/photos"
    path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": "m1"})["Mountpoint"]
    Path(path, "a").write_text("before the crash")
    node.kill()
    Path(path, "b").write_text("while the daemon was down")
    node.start()
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": "m1"}) == {}
    [commit] = node.cli_json("log", "photos")
    snapshot = node.pool_root / "repos" / "photos" / "commits" / commit["id"]
    assert (snapshot / "a").read_text() == "before the crash"
    assert (snapshot / "b").read_text() == "while the daemon was down"


def test_second_daemon_on_the_same_state_dir_is_refused(node: PfsNode, tmp_path: Path) -> None:
    node.start()
    name = f"{node.driver_name}/photos"
    path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": "m1"})["Mountpoint"]
    Path(path, "a").write_text("x")
    twin = PfsNode(node.state_dir, plugin_dir=node.plugin_dir)
    twin.api_socket = tmp_path / "twin.sock"
    with pytest.raises(
        RuntimeError, match=r"another pfs daemon \(pid \d+\) is using the state dir"
    ):
        twin.start()
    assert not twin.plugin_socket.exists()
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": "m1"}) == {}
    assert len(node.cli_json("log", "photos")) == 1


def test_second_daemon_on_the_same_socket_is_refused(node: PfsNode, tmp_path: Path) -> None:
    node.start()
    twin = PfsNode(tmp_path / "other", driver_name=node.driver_name, plugin_dir=node.plugin_dir)
    with pytest.raises(RuntimeError, match="another process is serving on"):
        twin.start()
    assert not (twin.state_dir / "pool.img").exists(), "refused before touching anything"
    assert node.plugin("Plugin.Activate") == {"Implements": ["VolumeDriver"]}


def test_crash_in_a_commit_while_mounted_keeps_later_writes_for_the_unmount(
    node: PfsNode,
) -> None:
    node.start(env={"PFS_FAILPOINTS": "commit.after_snapshot"})
    name = f"{node.driver_name}/photos"
    path = node.plugin("VolumeDriver.Mount", {"Name": name, "ID": "m1"})["Mountpoint"]
    Path(path, "a").write_text("committed by hand")
    assert node.cli("commit", "photos/master", "-m", "by hand", check=False).returncode != 0
    assert node.wait_exit() == 137
    Path(path, "b").write_text("written while the daemon was down")
    node.start()
    [by_hand] = node.cli_json("log", "photos")
    assert by_hand["message"] == "by hand"
    assert node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": "m1"}) == {}
    newest = node.cli_json("log", "photos")[0]
    assert newest["id"] != by_hand["id"], "the unmount must commit the later write"
    snapshot = node.pool_root / "repos" / "photos" / "commits" / newest["id"]
    assert (snapshot / "b").read_text() == "written while the daemon was down"
