"""A container plants a deep tree whose every level holds a file beside its folder, and
the root daemon's tree walks then hold one open descriptor per level: at the soft
descriptor limit a systemd service gets by default (1024), ``pfs inspect``, ``pfs get``
and ``pfs rm -r`` over 1,500 levels failed with EMFILE (a 500), and while a walk held
every descriptor the daemon's other calls failed too. The walks' "one descriptor for a
chain" only helped a chain of lone folders (``d/d/d/...``); a file listed after the
folder at each level kept every level's descriptor open.

Real daemon, real btrfs pool; the tree is written into the branch's working copy as a
container writes it (relative names, past PATH_MAX), and committed through the API."""

from __future__ import annotations

import io
import os
import resource
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests
import requests_unixsocket

from tests.pfs_node import PfsNode

pytestmark = pytest.mark.timeout(120)

DEPTH = 1500
SYSTEMD_SOFT_LIMIT = 1024
"""The soft RLIMIT_NOFILE systemd gives a service that sets no LimitNOFILE."""


def plant(top: Path, depth: int = DEPTH) -> None:
    """``d/d/.../d`` ``depth`` levels deep, each level holding files ``a`` and ``z``
    made around its folder (so the folder is listed neither first nor last)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.close(os.open("a", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            os.mkdir("d", dir_fd=fd)
            os.close(os.open("z", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as out:
            out.write(b"deep")
    finally:
        os.close(fd)


def call(node: PfsNode, method: str, path: str, **kwargs: Any) -> requests.Response:
    """An API call with a body (``PfsNode.api`` sends query parameters only)."""
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F") + path
    with requests_unixsocket.Session() as session:
        return session.request(method, url, timeout=60, **kwargs)


def committed_deep_tree(node: PfsNode) -> str:
    """A repo ``r`` whose first commit, made as a container's last unmount, holds the
    planted tree (a first commit: its changes are found by a walk, not by btrfs send,
    whose time grows with the square of the depth); its commit id."""
    assert "Err" not in node.plugin("VolumeDriver.Create", {"Name": "r"})
    mounted = node.plugin("VolumeDriver.Mount", {"Name": "r", "ID": "m1"})
    work = Path(mounted["Mountpoint"])
    (work / "seed").write_bytes(b"x")
    plant(work)
    assert not node.plugin("VolumeDriver.Unmount", {"Name": "r", "ID": "m1"}).get("Err")
    head = node.api("GET", "/v1/repos/r/commits/master")
    assert head.status_code == 200, head.text
    commit: str = head.json()["id"]
    assert node.process is not None
    resource.prlimit(
        node.process.pid, resource.RLIMIT_NOFILE, (SYSTEMD_SOFT_LIMIT, SYSTEMD_SOFT_LIMIT)
    )
    return commit


def test_inspect_get_and_rm_of_a_deep_tree_hold_bounded_descriptors(node: PfsNode) -> None:
    commit = committed_deep_tree(node)

    inspected = node.api("GET", f"/v1/repos/r/commits/{commit}")
    assert inspected.status_code == 200, inspected.text[:300]
    assert inspected.json()["size"] == len(b"deep") + 1

    tarred = node.api("GET", f"/v1/repos/r/commits/{commit}/tar")
    assert tarred.status_code == 200, tarred.text[:300]
    with tarfile.open(fileobj=io.BytesIO(tarred.content)) as tar:
        names = tar.getnames()
    assert len(names) == 1 + 1 + 3 * DEPTH + 1  # r, seed, a/d/z per level, bottom
    assert names[-1].endswith("/d/bottom") or any(n.endswith("/bottom") for n in names)

    removed = call(node, "DELETE", "/v1/repos/r/branches/master/files?path=d&recursive=true")
    assert removed.status_code == 200, removed.text[:300]
    listed = node.api("GET", "/v1/repos/r/commits/master/files")
    assert [e["name"] for e in listed.json()["entries"]] == ["a", "seed", "z"]
    assert node.api("GET", "/v1/health").status_code == 200


WIDE = 1500


def test_a_revert_removing_a_wide_folder_holds_bounded_descriptors(node: PfsNode) -> None:
    """Before a merge or revert removes a folder it looks for a subvolume a container
    made under it (``refuse_nested_subvolumes``): that search opened every subfolder of
    a folder at once and kept them all open, so a folder of 1,500 empty subfolders (no
    depth needed) made the revert a 500 (EMFILE) at systemd's soft limit."""
    assert "Err" not in node.plugin("VolumeDriver.Create", {"Name": "w"})
    for mount_id, fill in (("m1", False), ("m2", True)):
        work = Path(node.plugin("VolumeDriver.Mount", {"Name": "w", "ID": mount_id})["Mountpoint"])
        (work / "seed").write_bytes(b"x")
        if fill:
            (work / "wide").mkdir()
            for i in range(WIDE):
                (work / "wide" / f"s{i:05d}").mkdir()
        assert not node.plugin("VolumeDriver.Unmount", {"Name": "w", "ID": mount_id}).get("Err")
    head = node.api("GET", "/v1/repos/w/commits/master").json()["id"]
    assert node.process is not None
    resource.prlimit(
        node.process.pid, resource.RLIMIT_NOFILE, (SYSTEMD_SOFT_LIMIT, SYSTEMD_SOFT_LIMIT)
    )
    reverted = call(node, "POST", "/v1/repos/w/branches/master/revert", json={"commit": head})
    assert reverted.status_code == 200, reverted.text[:300]
    listed = node.api("GET", "/v1/repos/w/commits/master/files")
    assert [e["name"] for e in listed.json()["entries"]] == ["seed"]
