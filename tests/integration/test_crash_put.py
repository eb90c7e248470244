"""A real daemon killed (as by kill -9) in the middle of writing a put's bytes leaves no
named partial file in the working copy (the bytes were in an unnamed file), and after a
restart the branch counts as clean again: nothing to commit, the next put works."""

from __future__ import annotations

import os

import pytest
import requests
import requests_unixsocket

from tests.pfs_node import PfsNode


def put(node: PfsNode, path: str, data: bytes) -> requests.Response:
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F")
    return requests_unixsocket.Session().put(
        url + "/v1/repos/r/branches/master/files", params={"path": path}, data=data, timeout=60
    )


@pytest.mark.parametrize("target", ["docs/a.txt", "docs/new.txt", "fresh/folder/b.bin"])
def test_a_crash_mid_upload_leaves_no_named_partial(node: PfsNode, target: str) -> None:
    node.start()
    node.cli("repo", "create", "r")
    reply = put(node, "docs/a.txt", b"alpha")
    assert reply.status_code == 200, reply.text
    [head] = node.cli_json("log", "r")
    working_copy = node.pool_root / "repos" / "r" / "branches" / "master"
    before = sorted(os.walk(working_copy))
    node.stop()

    node.start(env={"PFS_FAILPOINTS": "put.during_write"})
    with pytest.raises(requests.ConnectionError):
        reply = put(node, target, os.urandom(3 * 1024 * 1024))
        pytest.fail(f"{reply.status_code} {reply.text}")
    assert node.wait_exit() == 137
    assert sorted(os.walk(working_copy)) == before
    assert (working_copy / "docs" / "a.txt").read_bytes() == b"alpha"

    node.start()
    assert sorted(os.walk(working_copy)) == before
    assert [c["id"] for c in node.cli_json("log", "r")] == [head["id"]]
    assert node.cli("cat", "r@master", "docs/a.txt").stdout == "alpha"
    assert "a put interrupted by a crash left it clean" in node.log()
    assert node.cli_json("commit", "r/master", "-m", "anything?") is None
    reply = put(node, target, b"after the crash")
    assert reply.status_code == 200 and reply.json()["changed"] is True, reply.text
    assert not list((node.pool_root / "puts").iterdir())


def test_a_crash_between_linking_and_renaming_leaves_no_temporary_name(node: PfsNode) -> None:
    node.start()
    node.cli("repo", "create", "r")
    assert put(node, "docs/a.txt", b"alpha").status_code == 200
    [head] = node.cli_json("log", "r")
    working_copy = node.pool_root / "repos" / "r" / "branches" / "master"
    node.stop()

    node.start(env={"PFS_FAILPOINTS": "put.before_rename"})
    with pytest.raises(requests.ConnectionError):
        put(node, "docs/a.txt", b"beta")
    assert node.wait_exit() == 137
    [temp] = [n for n in os.listdir(working_copy / "docs") if n.startswith(".pfs-put-")]
    assert (working_copy / "docs" / temp).read_bytes() == b"beta"

    node.start()
    assert sorted(os.listdir(working_copy / "docs")) == ["a.txt"]
    assert (working_copy / "docs" / "a.txt").read_bytes() == b"alpha"
    assert node.cli_json("commit", "r/master", "-m", "anything?") is None
    assert [c["id"] for c in node.cli_json("log", "r")] == [head["id"]]
