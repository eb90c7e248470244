"""A real daemon killed (as by kill -9) at each step of a put leaves its branch either
clean or holding the whole new file, never a partial file or a stray name:

* while the bytes come in (a failpoint, or SIGKILL while a client streams or while the
  daemon stages) the working copy is not touched at all, its generation included; the
  staged file left in ``<pool>/staging`` is removed by the next start-up;
* between making the missing folders and linking the file, the folders go at start-up;
* between linking the temporary name and renaming it over the target, the name goes.

After each, the branch counts as clean: nothing to commit, and the next put works. A put
killed after its file got its name but before its commit is committed at start-up: the
branch is never left holding a change that refuses every later put."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import requests_unixsocket

from pfs_volume.btrfs import BtrfsPool
from tests.pfs_node import PfsNode

MIB = 1024 * 1024


def put(node: PfsNode, path: str, data: bytes | Iterator[bytes]) -> requests.Response:
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F")
    return requests_unixsocket.Session().put(
        url + "/v1/repos/r/branches/master/files", params={"path": path}, data=data, timeout=60
    )


def working_copy(node: PfsNode) -> Path:
    return node.pool_root / "repos" / "r" / "branches" / "master"


def generation(node: PfsNode) -> int:
    return BtrfsPool(node.pool_root).generation(working_copy(node))


def staged(node: PfsNode) -> list[Path]:
    return sorted((node.pool_root / "staging").iterdir())


def started_with_one_file(node: PfsNode) -> tuple[str, list[tuple[str, list[str], list[str]]]]:
    """Start the node, make repo r with docs/a.txt = alpha; the head, the tree."""
    node.start()
    node.cli("repo", "create", "r")
    reply = put(node, "docs/a.txt", b"alpha")
    assert reply.status_code == 200, reply.text
    [head] = node.cli_json("log", "r")
    return head["id"], sorted(os.walk(working_copy(node)))


def assert_clean_after_restart(node: PfsNode, head: str, tree: object, target: str) -> None:
    node.start()
    assert sorted(os.walk(working_copy(node))) == tree
    assert staged(node) == []
    assert [c["id"] for c in node.cli_json("log", "r")] == [head]
    assert node.cli("cat", "r@master", "docs/a.txt").stdout == "alpha"
    assert node.cli_json("commit", "r/master", "-m", "anything?") is None
    reply = put(node, target, b"after the crash")
    assert reply.status_code == 200 and reply.json()["changed"] is True, reply.text
    assert not list((node.pool_root / "puts").iterdir())
    assert staged(node) == []


@pytest.mark.parametrize("target", ["docs/a.txt", "fresh/folder/b.bin"])
def test_a_crash_mid_upload_leaves_the_working_copy_untouched(node: PfsNode, target: str) -> None:
    head, tree = started_with_one_file(node)
    node.stop()
    node.start(env={"PFS_FAILPOINTS": "put.during_write"})
    before = generation(node)
    with pytest.raises(requests.ConnectionError):
        reply = put(node, target, os.urandom(3 * MIB))
        pytest.fail(f"{reply.status_code} {reply.text}")
    assert node.wait_exit() == 137
    assert sorted(os.walk(working_copy(node))) == tree
    assert generation(node) == before
    [leftover] = staged(node)
    assert leftover.name.startswith("put-") and leftover.stat().st_size == MIB
    assert_clean_after_restart(node, head, tree, target)
    assert "staging: removed 1 upload(s) a crash cut off, 1048576 bytes" in node.log()


def test_a_daemon_killed_under_a_slow_upload_leaves_only_a_staged_file(node: PfsNode) -> None:
    """Two SIGKILLs: while a slow client still streams (waitress spools the body until
    it is whole, so nothing has reached pfs), and while pfs stages the bytes (the
    ``stop`` failpoint freezes it there)."""
    head, tree = started_with_one_file(node)
    before = generation(node)
    release = threading.Event()
    answers: list[object] = []

    def slow_body() -> Iterator[bytes]:
        yield b"x" * MIB
        yield b"y" * MIB
        release.wait(30)
        yield b"never stored"

    def client(body: bytes | Iterator[bytes]) -> threading.Thread:
        def send() -> None:
            try:
                answers.append(put(node, "docs/slow.bin", body))
            except requests.ConnectionError as exc:
                answers.append(exc)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    thread = client(slow_body())
    try:
        threading.Event().wait(0.5)
        assert sorted(os.walk(working_copy(node))) == tree
        node.kill()
    finally:
        release.set()
        thread.join(timeout=30)
    assert staged(node) == []
    assert generation(node) == before

    node.start(env={"PFS_FAILPOINTS": "put.during_write=stop"})
    thread = client(b"z" * 3 * MIB)
    try:
        for _ in range(1200):  # 60 s: the spooled body reaches pfs late on a loaded host
            if staged(node) and node.is_stopped():
                break
            threading.Event().wait(0.05)
        else:
            sizes = [f.stat().st_size for f in staged(node)]
            pytest.fail(
                f"the upload was never staged at the failpoint: staged sizes {sizes}, "
                f"daemon stopped: {node.is_stopped()}"
            )
        # The failpoint stops the writing thread itself, right after its first write.
        assert [f.stat().st_size for f in staged(node)] == [MIB]
        assert sorted(os.walk(working_copy(node))) == tree
        assert generation(node) == before
        node.kill()
    finally:
        thread.join(timeout=30)
    assert [type(a) for a in answers] == [requests.ConnectionError] * 2
    assert [f.stat().st_size for f in staged(node)] == [MIB]

    assert_clean_after_restart(node, head, tree, "docs/b.txt")
    assert "staging: removed 1 upload(s) a crash cut off, 1048576 bytes" in node.log()
    [latest, _] = node.cli_json("log", "r")
    commit = node.pool_root / "repos" / "r" / "commits" / latest["id"]
    assert sorted(os.listdir(commit / "docs")) == ["a.txt", "b.txt"]


def test_a_crash_before_linking_removes_the_folders_it_made(node: PfsNode) -> None:
    head, tree = started_with_one_file(node)
    node.stop()
    node.start(env={"PFS_FAILPOINTS": "put.before_link"})
    with pytest.raises(requests.ConnectionError):
        put(node, "fresh/folder/b.bin", b"beta")
    assert node.wait_exit() == 137
    assert sorted(os.listdir(working_copy(node) / "fresh")) == ["folder"]
    assert os.listdir(working_copy(node) / "fresh" / "folder") == []

    assert_clean_after_restart(node, head, tree, "fresh/folder/b.bin")
    assert "a put interrupted by a crash left it clean" in node.log()


def test_a_crash_between_linking_and_renaming_leaves_no_temporary_name(node: PfsNode) -> None:
    head, tree = started_with_one_file(node)
    node.stop()
    node.start(env={"PFS_FAILPOINTS": "put.before_rename"})
    with pytest.raises(requests.ConnectionError):
        put(node, "docs/a.txt", b"beta")
    assert node.wait_exit() == 137
    [temp] = [n for n in os.listdir(working_copy(node) / "docs") if n.startswith(".pfs-put-")]
    assert (working_copy(node) / "docs" / temp).read_bytes() == b"beta"

    assert_clean_after_restart(node, head, tree, "docs/a.txt")
    assert "a put interrupted by a crash left it clean" in node.log()


@pytest.mark.parametrize("target", ["docs/a.txt", "new/folder/c.txt"])
def test_a_put_killed_before_its_commit_is_committed_at_start_up(
    node: PfsNode, target: str
) -> None:
    head, _ = started_with_one_file(node)
    node.stop()
    node.start(env={"PFS_FAILPOINTS": "put.before_commit"})
    with pytest.raises(requests.ConnectionError):
        put(node, target, b"landed")
    assert node.wait_exit() == 137

    node.start()
    log = node.cli_json("log", "r")
    assert [c["id"] for c in log[1:]] == [head]
    assert log[0]["origin"] == "put"
    assert f"put /{target} (committed at start-up" in log[0]["message"]
    assert node.cli("cat", "r@master", target).stdout == "landed"
    assert not list((node.pool_root / "puts").iterdir())
    reply = put(node, "docs/after.txt", b"after the crash")
    assert reply.status_code == 200 and reply.json()["changed"] is True, reply.text


@pytest.mark.parametrize(
    "point",
    [
        "commit.after_intent",
        "commit.after_snapshot",
        "commit.before_finish",
        "commit.between_record_and_head",
        "commit.after_finish",
    ],
)
def test_a_crash_in_start_ups_put_commit_commits_the_put_once(node: PfsNode, point: str) -> None:
    """The daemon is killed again while start-up commits a landed put: the next start
    finishes or redoes that commit, and the put lands in exactly one commit."""
    head, _ = started_with_one_file(node)
    node.stop()
    node.start(env={"PFS_FAILPOINTS": "put.before_commit"})
    with pytest.raises(requests.ConnectionError):
        put(node, "docs/a.txt", b"landed")
    assert node.wait_exit() == 137
    with pytest.raises(RuntimeError, match="exited 137"):
        node.start(env={"PFS_FAILPOINTS": point})
    node.start()
    log = node.cli_json("log", "r")
    assert [c["id"] for c in log[1:]] == [head], log
    assert log[0]["origin"] == "put"
    assert node.cli("cat", "r@master", "docs/a.txt").stdout == "landed"
    assert not list((node.pool_root / "puts").iterdir())
    assert node.cli("doctor", check=False).returncode == 0, node.cli("doctor", check=False).stdout
    reply = put(node, "docs/after.txt", b"after the crashes")
    assert reply.status_code == 200 and reply.json()["changed"] is True, reply.text
