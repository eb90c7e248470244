"""A real daemon killed (as by kill -9) half way through writing a merge into a working
copy, or after writing it and before committing, leaves the branch as it was once it
restarts: same head, a clean working copy holding the head (no half merge for the next
unmount to commit), and the same merge succeeds afterwards."""

from __future__ import annotations

import os

import pytest
import requests
import requests_unixsocket

from tests.pfs_node import PfsNode
from tests.trees_model import read_tree


def put(node: PfsNode, branch: str, path: str, text: str) -> None:
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F")
    reply = requests_unixsocket.Session().put(
        f"{url}/v1/repos/r/branches/{branch}/files", params={"path": path}, data=text, timeout=60
    )
    assert reply.status_code == 200, reply.text


def commit_files(node: PfsNode, branch: str, files: dict[str, str | None]) -> None:
    work = node.pool_root / "repos" / "r" / "branches" / branch
    for path, text in files.items():
        if text is None:
            (work / path).unlink()
        else:
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
    assert node.cli_json("commit", f"r/{branch}", "-m", "edit") is not None


@pytest.mark.parametrize("point", ["merge.during_apply", "merge.before_commit"])
def test_a_crash_mid_merge_leaves_the_branch_as_it_was(node: PfsNode, point: str) -> None:
    node.start()
    node.cli("repo", "create", "r")
    put(node, "master", "a", "1")  # makes the working copy
    commit_files(node, "master", {"d/f": "1", "gone": "g"})
    node.cli("branch", "create", "r/dev", "--from", "master")
    put(node, "dev", "a", "dev")
    commit_files(node, "dev", {"d/new": "n", "gone": None})
    commit_files(node, "master", {"x": "master"})
    [head, *_] = node.cli_json("log", "r", "--first-parent")
    working_copy = node.pool_root / "repos" / "r" / "branches" / "master"
    before = read_tree(working_copy)
    node.stop()

    node.start(env={"PFS_FAILPOINTS": point})
    with pytest.raises((requests.ConnectionError, AssertionError)):
        node.cli("merge", "r/dev", "--into", "master")
    assert node.wait_exit() == 137
    assert read_tree(working_copy) != before  # the crash left a half-written copy

    node.start()
    assert "a merge interrupted by a crash was undone" in node.log()
    assert node.cli_json("log", "r", "--first-parent")[0]["id"] == head["id"]
    # The half-written copy is gone; the next use makes it again from the head.
    assert not working_copy.exists()
    assert node.cli_json("commit", "r/master", "-m", "anything?") is None
    head_snapshot = node.pool_root / "repos" / "r" / "commits" / head["id"]
    assert read_tree(head_snapshot) == before
    assert not os.listdir(node.pool_root / "merges")
    merged = node.cli_json("merge", "r/dev", "--into", "master")
    assert merged["outcome"] == "merged" and len(merged["commit"]["parents"]) == 2
    assert node.cli("cat", "r@master", "a").stdout == "dev"
    assert node.cli("cat", "r@master", "x").stdout == "master"
    assert node.cli("cat", "r@master", "d/new").stdout == "n"
