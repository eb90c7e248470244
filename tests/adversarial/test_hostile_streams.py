"""Crafted btrfs send streams against a real daemon: every ``btrfs receive`` stays inside
the commit it makes (DESIGN.md invariant 8).

Each hostile stream comes in a valid export file (format 2, right SHA-256) after a benign
first commit, so that only the stream itself can be refused. It must be refused with
pfs's words (400, not 500), change no file outside (canaries next to the pool, in another
repo, on the host, under /etc), leave no subvolume behind and the store as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pfs_volume.frames import encode_frames
from pfs_volume.transfer import MAGIC
from tests.hostile_streams import (
    FIRST,
    HOSTILE,
    INCREMENTAL,
    SECOND,
    Target,
    first_commit,
    on_first,
)
from tests.pfs_node import PRIVATE_PLUGIN_DIR, PfsNode

# Its module-scoped daemon starts once: every test of the module on one xdist worker.
pytestmark = pytest.mark.xdist_group("hostile-streams")

CREATED = "2026-11-30T00:00:00.000000Z"


def entry(commit_id: str, parent: str | None, base: str | None) -> dict[str, Any]:
    """An export file's commit entry."""
    return {
        "id": commit_id,
        "parent": parent,
        "merge_parents": [],
        "branch": "master",
        "created": CREATED,
        "message": "crafted",
        "origin": "api",
        "provenance": [],
        "job": None,
        "stream": True,
        "base": base,
    }


def export_file(streams: list[bytes], incremental: bool = False) -> bytes:
    """A valid format 2 export file of repo ``crafted`` with the given streams (the
    first is commit FIRST, the second SECOND; SECOND is on FIRST if ``incremental``)."""
    ids = [FIRST, SECOND][: len(streams)]
    entries = [
        entry(commit_id, ids[i - 1] if i else None, ids[i - 1] if i and incremental else None)
        for i, commit_id in enumerate(ids)
    ]
    metadata = {
        "format": 2,
        "repo": {"name": "crafted", "created": CREATED, "description": ""},
        "branches": [{"name": "master", "head": ids[-1], "created": CREATED}],
        "commits": entries,
    }
    body = MAGIC + json.dumps(metadata).encode() + b"\n"
    for stream in streams:
        body += b"".join(encode_frames([stream]))
    return body + hashlib.sha256(body).digest()


def subvolumes(pool: Path) -> list[str]:
    """Every subvolume of the pool, by path."""
    listed = subprocess.run(
        ["btrfs", "subvolume", "list", "-o", str(pool)], capture_output=True, text=True, check=True
    ).stdout
    return sorted(line.split(" path ")[-1] for line in listed.splitlines())


def tree(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    """Every entry under ``root`` (not following links): mode, owner, content or target."""
    found: dict[str, tuple[int, int, bytes | str]] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            st = path.lstat()
            content: bytes | str = b""
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file() and st.st_size < 1 << 20:
                content = path.read_bytes()
            found[str(path.relative_to(root))] = (st.st_mode, st.st_uid, content)
    return found


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PfsNode]:
    """One real daemon for the module, with a repo ``victim`` of one commit."""
    node = PfsNode(
        tmp_path_factory.mktemp("hostile") / "state", pool_size="1G", plugin_dir=PRIVATE_PLUGIN_DIR
    )
    node.start()
    try:
        mount_id = "m1"
        name = f"{node.driver_name}/victim"
        mountpoint = Path(
            node.plugin("VolumeDriver.Mount", {"Name": name, "ID": mount_id})["Mountpoint"]
        )
        (mountpoint / "f").write_bytes(b"victim data" * 1000)
        node.plugin("VolumeDriver.Unmount", {"Name": name, "ID": mount_id})
        yield node
    finally:
        node.cleanup()


def post_import(node: PfsNode, data: bytes) -> tuple[int, Any]:
    """POST an export file to /v1/imports; (status, JSON body)."""
    url = "http+unix://" + str(node.api_socket).replace("/", "%2F") + "/v1/imports"
    reply = node._session.post(url, data=data, timeout=120)
    return reply.status_code, reply.json()


def test_a_benign_crafted_stream_is_received_whole(daemon: PfsNode) -> None:
    """The generator makes streams btrfs receives: what the hostile tests refuse is the
    attack, not a broken encoding."""
    second = (
        on_first()
        .mkfile("o1")
        .write("o1", b"second")
        .rename("o1", "d/g")
        .symlink("d/l", "/etc/passwd")
        .link("d/h", "d/f")
        .set_xattr("d/g", "user.k", b"v")
        .chmod("d/g", 0o640)
        .mkdir("e")
        .utimes("")
        .bytes()
    )
    status, body = post_import(daemon, export_file([first_commit(), second], incremental=True))
    try:
        assert status == 201, body
        root = daemon.pool_root / "repos" / "crafted" / "commits" / SECOND
        assert (root / "d" / "g").read_bytes() == b"second"
        assert (root / "d" / "h").read_bytes() == b"first"
        assert os.readlink(root / "d" / "l") == "/etc/passwd"
        assert os.getxattr(root / "d" / "g", "user.k") == b"v"
        assert (root / "d" / "g").stat().st_mode & 0o777 == 0o640
        assert (root / "e").is_dir()
        log = daemon.cli_json("log", "crafted")
        assert [c["id"] for c in log] == [SECOND, FIRST]
    finally:
        daemon.cli("repo", "delete", "crafted", "--yes")


THROUGH_IMPORT = [
    "mkfile ../../x",
    "mkfile absolute",
    "symlink to the host then write through it",
    "symlink to / then rename a sibling commit",
    "clone from a host file",
    "a second subvolume",
    "incremental: write through a symlink of the base",
    "subvol named ../x",
]
"""One of each family of the catalogue goes through the whole import route; every kind
goes through the same receive in tests/integration/test_receive_confinement.py."""


@pytest.mark.parametrize("attack", THROUGH_IMPORT)
def test_a_hostile_stream_is_refused_and_touches_nothing_outside(
    daemon: PfsNode, attack: str, tmp_path: Path
) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "canary").write_text("canary")
    (host / "folder").mkdir()
    beside = daemon.state_dir / "canary"
    beside.write_text("beside the pool")
    victim_commit = daemon.cli_json("commit", "inspect", "victim@master")["id"]
    victim_path = daemon.pool_root / "repos" / "victim" / "commits" / victim_commit
    other_uuid = uuid.UUID(
        subprocess.run(
            ["btrfs", "subvolume", "show", str(victim_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.split("UUID:", 1)[1]
        .split()[0]
    )
    watched = {"host": host, "pool": daemon.pool_root / "repos", "etc": Path("/etc")}
    before = {label: tree(path) for label, path in watched.items() if label != "etc"}
    etc_before = sorted(os.listdir("/etc"))
    subvolumes_before = subvolumes(daemon.pool_root)
    repos_before = daemon.cli_json("repo", "list")

    hostile = HOSTILE[attack](Target(host, other_uuid))
    data = export_file([first_commit(), hostile], incremental=attack in INCREMENTAL)
    status, body = post_import(daemon, data)

    assert status == 400, body
    message = body["error"]["message"]
    assert body["error"]["code"] == "stream_refused", body
    assert message.startswith("the export file is damaged: the send stream of commit"), message
    assert "was refused" in message
    assert {label: tree(path) for label, path in watched.items() if label != "etc"} == before
    assert sorted(os.listdir("/etc")) == etc_before
    assert not Path("/etc/evil").exists()
    assert beside.read_text() == "beside the pool"
    assert sorted(os.listdir(daemon.state_dir)) == sorted(os.listdir(daemon.state_dir))
    assert subvolumes(daemon.pool_root) == subvolumes_before
    assert list((daemon.pool_root / "incoming").iterdir()) == []
    assert daemon.cli_json("repo", "list") == repos_before
    assert "Traceback" not in daemon.log()
