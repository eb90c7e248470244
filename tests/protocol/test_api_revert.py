"""Revert through the API (in process and over the socket) on a real btrfs pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pfs_volume.volumes import VolumeService
from tests.cli_run import invoke
from tests.protocol.conftest import Transport


def edit(volumes: VolumeService, mount_id: str, change: Any) -> str:
    path = volumes.mount("pfs/r", mount_id)
    change(path)
    volumes.unmount("pfs/r", mount_id)
    return volumes.repos.get_branch("r", "master").head or ""


def tree(volumes: VolumeService, commit: str) -> dict[str, str]:
    root = volumes.repos.commit_path("r", commit)
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def revert(http: Transport, commit: str) -> tuple[int, Any]:
    status, body, _ = http.request(
        "POST", "/v1/repos/r/branches/master/revert", json.dumps({"commit": commit}).encode()
    )
    return status, body


def base(path: Path) -> None:
    (path / "keep").write_text("k")
    (path / "mod").write_text("v1")
    (path / "gone").write_text("g")
    (path / "old").write_text("o")
    (path / "d").mkdir()
    (path / "d" / "in").write_text("i")


def change(path: Path) -> None:
    (path / "mod").write_text("v2")
    (path / "gone").unlink()
    (path / "old").rename(path / "new")
    (path / "added").write_text("a")
    (path / "d" / "in").unlink()
    (path / "d").rmdir()


def test_revert_undoes_every_kind_of_change_and_keeps_later_work(
    api_http: Transport, volumes: VolumeService
) -> None:
    first = edit(volumes, "m1", base)
    second = edit(volumes, "m2", change)
    edit(volumes, "m3", lambda p: (p / "later").write_text("l"))
    status, body = revert(api_http, second[:10])
    assert status == 200 and body["commit"]["origin"] == "revert"
    assert body["commit"]["message"].startswith(f"revert {second[:12]}")
    assert tree(volumes, body["commit"]["id"]) == {**tree(volumes, first), "later": "l"}


def test_revert_refuses_paths_changed_again_and_changes_nothing(
    api_http: Transport, volumes: VolumeService
) -> None:
    edit(volumes, "m1", base)
    second = edit(volumes, "m2", change)
    third = edit(volumes, "m3", lambda p: (p / "mod").write_text("v3"))
    status, body = revert(api_http, second)
    assert status == 409 and "changed these paths again since: mod" in body["error"]["message"]
    assert volumes.repos.get_branch("r", "master").head == third
    assert (volumes.repos.branch_path("r", "master") / "mod").read_text() == "v3"


def test_revert_of_the_first_commit_and_while_mounted(
    api_http: Transport, volumes: VolumeService
) -> None:
    first = edit(volumes, "m1", base)
    volumes.mount("pfs/r", "busy")
    status, body = revert(api_http, first)
    assert (status, body["error"]["code"]) == (409, "in_use")
    volumes.unmount("pfs/r", "busy")
    status, body = revert(api_http, first)
    assert status == 200 and tree(volumes, body["commit"]["id"]) == {}


def test_revert_verb(api_socket: str) -> None:
    result = invoke(["--api", api_socket, "revert", "photos/master", "master"])
    assert result.exit_code == 0 and result.stdout.startswith("committed ")
    result = invoke(["--api", api_socket, "ls", "photos@master", "--json"])
    assert [e["name"] for e in json.loads(result.stdout)] == ["a"]
