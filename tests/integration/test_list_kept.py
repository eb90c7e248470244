"""Docker's List keeps its answer between calls (``pfs_volume.volumes.kept_listing``): over
a real daemon's plugin socket, every change a volume's name, mountpoint or creation time
depends on shows in the very next List, and each List agrees with Get (which resolves
afresh) for every volume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pfs_volume.repos import RepoService
from pfs_volume.volumes import VolumeService
from tests.pfs_node import PfsNode


def listed(node: PfsNode) -> dict[str, str]:
    """List's answer as name -> mountpoint, checked against Get of each name."""
    reply = node.plugin("VolumeDriver.List", {})
    assert not reply.get("Err"), reply
    volumes: list[dict[str, Any]] = reply["Volumes"]
    found = {v["Name"]: v["Mountpoint"] for v in volumes}
    assert len(found) == len(volumes)
    for name, mountpoint in found.items():
        got = node.plugin("VolumeDriver.Get", {"Name": name})
        assert got["Volume"]["Mountpoint"] == mountpoint, (name, got)
        assert got["Volume"].get("CreatedAt") == _created(volumes, name)
    return found


def _created(volumes: list[dict[str, Any]], name: str) -> str | None:
    return next(v.get("CreatedAt") for v in volumes if v["Name"] == name)


def call(node: PfsNode, method: str, **body: str) -> dict[str, Any]:
    reply: dict[str, Any] = node.plugin(f"VolumeDriver.{method}", body)
    assert not reply.get("Err"), (method, body, reply)
    return reply


def commit(node: PfsNode, repo: str, branch: str, text: str) -> str:
    path = Path(call(node, "Path", Name=f"{repo}/{branch}")["Mountpoint"])
    (path / "data").write_text(text)
    made = node.api("POST", f"/v1/repos/{repo}/branches/{branch}/commit").json()
    return str(made["commit"]["id"])


def test_list_shows_every_change_at_once(node: PfsNode) -> None:
    node.start()
    assert listed(node) == {}
    call(node, "Create", Name="r")
    call(node, "Create", Name="r/feature")
    first = listed(node)
    assert set(first) == {"r", "r/feature"} and all(first.values())
    assert listed(node) == first  # kept, and still right

    one = commit(node, "r", "master", "one")
    call(node, "Create", Name=f"r@{one[:8]}")
    snapshot = listed(node)[f"r@{one[:8]}"]
    assert snapshot.endswith(one)

    # A mount and an unmount that commits: the head moves, a new commit's name resolves.
    call(node, "Mount", Name="r", ID="c1")
    (Path(first["r"]) / "data").write_text("two")
    call(node, "Unmount", Name="r", ID="c1")
    two = node.api("GET", "/v1/repos/r/log").json()["commits"][0]["id"]
    assert two != one
    call(node, "Create", Name=f"r@{two[:8]}")
    assert listed(node)[f"r@{two[:8]}"].endswith(two)

    call(node, "Remove", Name="r/feature")
    assert "r/feature" not in listed(node)
    call(node, "Create", Name="r/feature")
    assert listed(node)["r/feature"] == first["r/feature"]

    # The branch goes (its working copy with it): the name now means a branch a mount
    # would make, with no mountpoint yet.
    node.cli("branch", "delete", "r/feature")
    assert listed(node)["r/feature"] == ""

    # gc prunes the older commit: its snapshot is gone from the pool.
    node.cli("gc", "r", "--keep-last", "1")
    assert listed(node)[f"r@{one[:8]}"] == ""
    assert listed(node)[f"r@{two[:8]}"] != ""

    # The repo goes, and its volume names with it.
    node.cli("repo", "delete", "r", "--yes")
    assert listed(node) == {}
    assert node.plugin("VolumeDriver.Get", {"Name": "r"}).get("Err")


def test_a_change_only_the_pool_sees_shows_too(volumes: VolumeService, repos: RepoService) -> None:
    """A working copy dropped after a failed merge or revert changes no record: the
    pool's change count moves List's token."""
    volumes.create("r", {})
    path = volumes.list()[0].mountpoint
    assert path and volumes.list()[0].mountpoint == path
    repos.drop_working_copy("r", "master")
    assert [v.mountpoint for v in volumes.list()] == [""]
    volumes.mount("r", "c1")
    assert [v.mountpoint for v in volumes.list()] == [path]
